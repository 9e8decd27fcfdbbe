"""The sections of a brief body: Meta line, paragraphs, lists, takes, the graph."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain

from .inline import PLAIN_HTTP, PLAIN_HTTP_TOKEN, Context, is_plain, plain, short, strip_quotes
from .model import EMPTY, Lens, Meta, Rich, Take, rich, take
from .slugs import MAX_SLUG, SLUG_RE, slugify

_CANONICAL = re.compile(r"^Canonical:\s*(\S*)\s*$", re.IGNORECASE)
_LIST_ITEM = re.compile(r"^\s{0,3}(?:[-*+]|\d{1,9}[.)])\s+(.*)$")
_TAKE = re.compile(
    r"^[-*+]\s+\*\*(?P<outlet>.+?)\*\*"
    r"\s*(?:\((?P<paren>[^()]*)\))?"
    r"\s*(?:(?:—|–|--|-)\s*(?P<text>.*))?$"
)
# The take head as nearly every brief writes it, "- **Outlet** (Region, language) — text",
# with outlet, region and language already plain (words of no Markdown and no
# other space than single spaces: what plain() leaves as they are). Its groups
# are what take_head() gives for such a line (a test checks it) at a third of
# the cost; any other head goes through take_head().
_PLAIN_WORDS = r"[^\s*_`\\&\[{0}]+(?: [^\s*_`\\&\[{0}]+)*"
_TAKE_PLAIN = re.compile(
    r"[-*+]\s+\*\*(" + _PLAIN_WORDS.format("") + r")\*\* "
    r"\((" + _PLAIN_WORDS.format("(),") + "), (" + _PLAIN_WORDS.format("(),") + r")\)"
    r"\s*(?:—|–|--|-)\s*(.*)"
)
# A stripped Source line with a plain http(s) URL: what source_of gives (url, True) for.
_SOURCE_PLAIN = re.compile(r"Source: (" + PLAIN_HTTP.replace("[^\\s]*", "\\S*") + r")\Z")
_QUOTE = re.compile(r"^>\s?(.*)$")
_COUNT = re.compile(r"^(\d+)\s+([A-Za-z][\w -]*)$")
_WIKI = re.compile(r"\[\[([^\[\]]*)\]\]")

_KNOWN_SECTIONS = {
    "summary": "summary",
    "why it matters": "why",
    "what to watch": "watch",
    "regional takes": "takes",
    "across the graph": "graph",
}

# No known title is a prefix of another, so the order of these tests does not matter.
_SECTION_STARTS = tuple(((prefix + " ", prefix + "("), kind) for prefix, kind in _KNOWN_SECTIONS.items())


# A section's lines as the outline found them: runs of consecutive lines, each
# with the number of its first line (one run, unless a Meta or Canonical line
# was taken out of the section).
Segments = list[tuple[int, list[str]]]


def numbered(body: Segments) -> Iterator[tuple[int, str]]:
    """(line number, line) for every line of ``body``. The pairs are made as
    they are read (enumerate reuses its tuple), not kept: most of a brief."""
    if len(body) == 1:
        start, lines = body[0]
        return enumerate(lines, start)
    return chain.from_iterable(enumerate(lines, start) for start, lines in body)


def is_rule(text: str) -> bool:
    """A thematic break (---, ***, ___); cheap first-character test first."""
    stripped = text.strip()
    return bool(stripped) and _maybe_rule(stripped) and _rule(text, stripped)


def _rule(text: str, stripped: str) -> bool:
    r"""For a line whose ``stripped`` form starts and ends with the same marker: at most three
    whitespace characters before it, then that marker and whitespace only, three markers or more
    (CommonMark's thematic break; ``r"^\s{0,3}(?:\*\s*){3,}$"`` and its '-' and '_' twins).

    Counted, not matched: the regex keeps a backtracking record per marker, so a
    line of 500k asterisks cost four times as much per byte as one of 100k."""
    if len(text) - len(text.lstrip()) > 3:
        return False
    marker = stripped[0]
    rest = stripped.replace(marker, "")
    return (not rest or rest.isspace()) and len(stripped) - len(rest) >= 3


def _maybe_rule(stripped: str) -> bool:
    # A rule holds one marker and whitespace only, so the stripped line ends
    # with the marker it starts with: list items and takes ("- **X** ...") fail
    # this without the regex.
    first = stripped[0]
    return first in "-*_" and stripped[-1] == first


def heading(line: str) -> tuple[int, str] | None:
    """(level, text) of an ATX heading line (``# Title``, ``## Section``, ...), or None.

    For level n, the text is what ``^#{n}(?!#)\\s+(.*?)\\s*#*\\s*$`` captures,
    found without the regex: its lazy group before an optional closing run
    made every heading cost microseconds (and a long run of spaces, quadratic
    time). The lazy group ends where the longest suffix of whitespace, '#'s,
    whitespace begins, which is what stripping from the right finds.
    """
    rest = line.lstrip("#")
    if not rest[:1].isspace():
        return None
    return len(line) - len(rest), rest.strip().rstrip("#").rstrip()


def section_kind(title: str) -> str | None:
    """Which known section a ``## title`` is, tolerant of case and a suffix."""
    norm = " ".join(title.lower().split())  # str.split() splits on exactly the whitespace \s matches
    kind = _KNOWN_SECTIONS.get(norm)
    if kind is not None:
        return kind
    for starts, kind in _SECTION_STARTS:
        if norm.startswith(starts):
            return kind
    return None


def parse_meta(raw: str, line: int, ctx: Context) -> Meta:
    type_: str | None = None
    date: dt.date | None = None
    heads: tuple[str, ...] = ()
    counts: list[tuple[str, int]] = []
    extra: list[tuple[str, str]] = []
    for item in (p.strip() for p in raw.split("·")):
        if not item:
            continue
        key, sep, value = item.partition(":")
        key_norm = key.strip().lower()
        if sep and key_norm in ("type", "date", "heads"):
            value = value.strip()
            if key_norm == "type":
                type_ = value or None
            elif key_norm == "date":
                try:
                    date = dt.date.fromisoformat(value)
                except ValueError:
                    ctx.error(line, f"Meta date is not YYYY-MM-DD: {short(value)}")
            else:
                heads = tuple(h.strip() for h in value.split(",") if h.strip())
            continue
        m = _COUNT.match(item)
        if m:
            counts.append((m.group(2).strip().lower(), int(m.group(1))))
        elif sep:
            extra.append((key.strip(), value.strip()))
        else:
            ctx.warn(line, f"unrecognised Meta item {short(item)}")
    return Meta(type_, date, heads, tuple(counts), tuple(extra), line)


def paragraphs(body: Iterable[tuple[int, str]]) -> list[tuple[str, int]]:
    paras: list[tuple[str, int]] = []
    current: list[str] = []
    start = 0
    for lineno, text in body:
        stripped = text.strip()
        # is_rule's first test inlined: a paragraph line seldom starts and ends with the same '-', '*' or '_'.
        if not stripped or (stripped[0] in "-*_" and stripped[-1] == stripped[0] and _rule(text, stripped)):
            if current:
                paras.append(("\n".join(current), start))
                current = []
            continue
        if not current:
            start = lineno
        current.append(stripped)
    if current:
        paras.append(("\n".join(current), start))
    return paras


def list_items(body: Iterable[tuple[int, str]], ctx: Context) -> list[tuple[str, int]]:
    items: list[tuple[str, int]] = []
    for lineno, text in body:
        stripped = text.strip()
        if not stripped or (stripped[0] in "-*_" and stripped[-1] == stripped[0] and _rule(text, stripped)):
            continue
        if text[1:2] == " " and text[0] in "-*+":
            items.append((text[2:].strip(), lineno))  # what _LIST_ITEM's group gives for "- item", without it
            continue
        m = _LIST_ITEM.match(text)
        if m:
            items.append((m.group(1).strip(), lineno))
        elif items and text.startswith((" ", "\t")):
            src, start = items[-1]
            items[-1] = (src + "\n" + stripped, start)
        else:
            items.append((stripped, lineno))
    return items


def source_of(stripped: str) -> tuple[str, bool] | None:
    """A take's ``Source: <url>`` line (``stripped``, starting with 'S' or 's'):
    the URL and whether PLAIN_HTTP_URL accepts it, or None for another line.

    What ``^Source:\\s*(\\S*)\\s*$`` (ignoring case) matches, by string
    methods: its \\S* walked a long URL a character at a time. ``lower()``
    matches "ource:" for exactly the characters the regex's case folding does
    (a test checks all of Unicode).
    """
    if stripped[1:7].lower() != "ource:":
        return None
    url = stripped[7:].lstrip()
    if len(url.split(None, 1)) > 1:
        return None  # whitespace inside: not one URL
    return url, PLAIN_HTTP_TOKEN.match(url) is not None


def take_head(line: str) -> tuple[str, str, str, str] | None:
    """(outlet, region, language, text) of a take's first line, each made plain
    but the text, or None when ``line`` is not one (see _TAKE)."""
    m = _TAKE.match(line)
    if m is None:
        return None
    outlet, paren, text = m.group("outlet", "paren", "text")
    # "(Region, language)": the language after the last comma, if any.
    region, sep, lang = paren.rpartition(",") if paren else ("", "", "")
    if not sep:
        region, lang = paren or "", ""
    if paren and not is_plain(paren):  # else neither part has anything for plain() to do
        region, lang = plain(region), plain(lang)
    else:
        region, lang = region.strip(), lang.strip()
    return plain(outlet), region, lang, text or ""


def _add_take(
    lenses: list[tuple[str, int, list[Take]]], ctx: Context, head: tuple[str, str, str, int],
    texts: list[str], quotes: list[str], source: str, source_line: int, trusted: bool,
) -> None:
    """The pending take, finished: its source checked, its text rendered, filed under the last lens."""
    outlet, region, language, line = head
    if not lenses:
        ctx.warn(line, "take before any '### lens' heading; grouped as 'unlabelled'")
        lenses.append(("unlabelled", line, []))
    if not source:
        url = None
        ctx.warn(line, f"take by {outlet!r} has no source URL")
    else:
        url = source if trusted else ctx.safe_url(source, source_line, "source URL")
    if len(texts) == 1:
        # Most takes are one line, and many have no text at all ("**X** (Y, en) — ").
        text = ctx.rich_inline(texts[0], line) if texts[0] else EMPTY
    else:
        text = ctx.rich_inline("\n".join(texts), line)
    quote = strip_quotes(" ".join(quotes)) if quotes else None
    lenses[-1][2].append(take(outlet, region, language, text, quote or None, url, line))


def parse_takes(body: Iterable[tuple[int, str]], ctx: Context) -> list[Lens]:
    lenses: list[tuple[str, int, list[Take]]] = []
    # The pending take: its head (outlet, region, language, line) and what follows it.
    head: tuple[str, str, str, int] | None = None
    texts: list[str] = []
    quotes: list[str] = []
    source = ""
    source_line = 0
    trusted = False  # the source is a plain http(s) URL: safe_url would return it as is
    for lineno, text in body:
        stripped = text.strip()
        if not stripped:
            continue
        first = stripped[0]
        # Dispatch on the first character; is_rule inlined (most lines here are takes, sources and quotes).
        if first in "-*_" and stripped[-1] == first and _rule(text, stripped):
            continue
        if first == "#":
            h3 = heading(text)
            if h3 is not None and h3[0] == 3:
                if head is not None:
                    _add_take(lenses, ctx, head, texts, quotes, source, source_line, trusted)
                    head = None
                lenses.append((plain(h3[1]) or "unlabelled", lineno, []))
                continue
        elif first == text[0] and first in "-*+":
            fast = _TAKE_PLAIN.match(text)
            new_head = fast.groups() if fast is not None else take_head(text)
            if new_head is not None:
                if head is not None:
                    _add_take(lenses, ctx, head, texts, quotes, source, source_line, trusted)
                outlet, region, lang, take_text = new_head
                head = (outlet, region, lang, lineno)
                texts, quotes, source, source_line, trusted = [take_text], [], "", lineno, False
                continue
        if head is not None:
            if first == "S" or first == "s":
                plain_url = _SOURCE_PLAIN.match(stripped)
                if plain_url is not None and not source:  # the common case: source_of's (url, True)
                    source, trusted, source_line = plain_url.group(1), True, lineno
                    continue
                found = source_of(stripped)
                if found is not None:
                    if source:
                        ctx.warn(lineno, "second Source line for one take; the first is kept")
                    else:
                        (source, trusted), source_line = found, lineno
                    continue
            elif first == ">":
                quotes.append(stripped[1:].strip())  # _QUOTE's group, stripped
                continue
            if text[0] == " " or text[0] == "\t":
                texts.append(stripped)
                continue
        ctx.warn(lineno, f"unrecognised line in Regional takes: {short(stripped)}")
    if head is not None:
        _add_take(lenses, ctx, head, texts, quotes, source, source_line, trusted)
    out: list[Lens] = []
    for name, line, takes in lenses:
        if not takes:
            ctx.warn(line, f"lens {name!r} has no takes")
            continue
        out.append(Lens(name, tuple(takes), line))
    return out


def parse_graph(body: Iterable[tuple[int, str]], ctx: Context) -> tuple[list[str], list[str]]:
    related: list[str] = []
    entities: list[str] = []
    for lineno, text in body:
        stripped = text.strip()
        if not stripped or is_rule(text) or (stripped[0] in "Cc" and _CANONICAL.match(stripped)):
            continue
        item = _LIST_ITEM.match(stripped)
        content = item.group(1) if item else stripped
        key, sep, value = content.partition(":")
        key = key.strip().lower()
        if sep and key == "related":
            for raw in _WIKI.findall(value) or [v for v in value.split(",") if v.strip()]:
                slug = raw.strip().split("|", 1)[0].strip()
                if SLUG_RE.match(slug) and len(slug) <= MAX_SLUG:
                    if slug not in related:
                        related.append(slug)
                else:
                    ctx.warn(lineno, f"related story {short(raw)} is not a valid slug; ignored")
        elif sep and key == "entities":
            for name in value.split(","):
                name = plain(name)
                if name and name not in entities:
                    entities.append(name)
        else:
            ctx.warn(lineno, f"unrecognised line in Across the graph: {short(stripped)}")
    return related, entities


def concat(a: Rich, b: Rich) -> Rich:
    if not a:
        return b
    if not b:
        return a
    return rich(a.html + "\n" + b.html, a.text + "\n\n" + b.text, a.links + b.links)


def check_counts(meta: Meta, lenses: Sequence[Lens], ctx: Context) -> None:
    actual = {
        "takes": sum(len(lens.takes) for lens in lenses),
        "lenses": len(lenses),
        "regions": len({t.region for lens in lenses for t in lens.takes if t.region}),
    }
    singular = {"take": "takes", "lens": "lenses", "region": "regions"}
    for name, claimed in meta.counts:
        key = singular.get(name, name)
        if key in actual and actual[key] != claimed:
            ctx.warn(meta.line, f"Meta says {claimed} {name} but {actual[key]} were parsed")
