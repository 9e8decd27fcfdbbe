"""The Regional takes parser gives what it gave before its fast paths, on any lines.

The reference is parse_takes as it was before issue 17's second round (every
head through _TAKE, every Source line through source_of, the quote pairs
tried in turn, dataclass constructors), kept here whole. Bodies are built
from the lines editors write and the ones they mistype: rules, headings at
every level and indent, heads the common-shape regex must refuse, Source
lines of every kind, quotes, continuation and stray lines.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.briefs import sections
from publisher.briefs.inline import Context, is_plain, plain, short
from publisher.briefs.model import EMPTY, Lens, Take
from publisher.briefs.sections import _TAKE, heading, source_of

# The thematic-break regex the old take parser used (sections counts markers now).
from tests.briefs.test_parse_fast_paths import _OLD_RULE as _RULE


def _old_strip_quotes(text: str) -> str:
    text = text.strip()
    pairs = (('"', '"'), ("“", "”"), ("«", "»"), ("„", "“"), ("「", "」"), ("'", "'"), ("‘", "’"))
    for left, right in pairs:
        if len(text) >= 2 and text.startswith(left) and text.endswith(right):
            return text[len(left) : -len(right)].strip()
    return text


def _old_add_take(
    lenses: list[tuple[str, int, list[Take]]], ctx: Context, head: tuple[str, str, str, int],
    texts: list[str], quotes: list[str], source: str, source_line: int, trusted: bool,
) -> None:
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
        text = ctx.rich_inline(texts[0], line) if texts[0] else EMPTY
    else:
        text = ctx.rich_inline("\n".join(texts), line)
    quote = _old_strip_quotes(" ".join(quotes)) if quotes else None
    lenses[-1][2].append(Take(outlet, region, language, text, quote or None, url, line))


def old_parse_takes(body: Sequence[tuple[int, str]], ctx: Context) -> list[Lens]:
    lenses: list[tuple[str, int, list[Take]]] = []
    head: tuple[str, str, str, int] | None = None
    texts: list[str] = []
    quotes: list[str] = []
    source = ""
    source_line = 0
    trusted = False
    for lineno, text in body:
        stripped = text.strip()
        if not stripped:
            continue
        first = stripped[0]
        if first in "-*_" and stripped[-1] == first and _RULE.match(text) is not None:
            continue
        if first == "#":
            h3 = heading(text)
            if h3 is not None and h3[0] == 3:
                if head is not None:
                    _old_add_take(lenses, ctx, head, texts, quotes, source, source_line, trusted)
                    head = None
                lenses.append((plain(h3[1]) or "unlabelled", lineno, []))
                continue
        elif first == text[0] and first in "-*+":
            m = _TAKE.match(text)
            if m:
                if head is not None:
                    _old_add_take(lenses, ctx, head, texts, quotes, source, source_line, trusted)
                outlet, paren, take_text = m.group("outlet", "paren", "text")
                region, sep, lang = paren.rpartition(",") if paren else ("", "", "")
                if not sep:
                    region, lang = paren or "", ""
                if paren and not is_plain(paren):
                    region, lang = plain(region), plain(lang)
                else:
                    region, lang = region.strip(), lang.strip()
                head = (plain(outlet), region, lang, lineno)
                texts, quotes, source, source_line, trusted = [take_text or ""], [], "", lineno, False
                continue
        if head is not None:
            if first == "S" or first == "s":
                found = source_of(stripped)
                if found is not None:
                    if source:
                        ctx.warn(lineno, "second Source line for one take; the first is kept")
                    else:
                        (source, trusted), source_line = found, lineno
                    continue
            elif first == ">":
                quotes.append(stripped[1:].strip())
                continue
            if text[0] == " " or text[0] == "\t":
                texts.append(stripped)
                continue
        ctx.warn(lineno, f"unrecognised line in Regional takes: {short(stripped)}")
    if head is not None:
        _old_add_take(lenses, ctx, head, texts, quotes, source, source_line, trusted)
    out: list[Lens] = []
    for name, line, takes in lenses:
        if not takes:
            ctx.warn(line, f"lens {name!r} has no takes")
            continue
        out.append(Lens(name, tuple(takes), line))
    return out


_LINES = [
    # lens headings, right and mistyped
    "### Gulf press", "### *US* tech", "###", "### ", "  ### indented", "#### deep", "## two", "#tag", "### unlabelled ###",
    # heads: the common shape, and near misses
    "- **Atlas Weekly** (Nigeria, en) — The election commission disclosed a deal. Analysts read it.",
    "- **Union Bulletin** (United Kingdom, fr) —", "* **Le Monde** (France, fr) -- Mots.", "+ **A** (B, c) – x",
    "- **A** (b, c,d) — x", "- **A**  (b, c) — x", "- **A** (b,  c) — x", "- **A*B** (b, c) — x", "- **_A_** (b, c) — x",
    "- **A** (b) — x", "- **A** — x", "- **A**", "- **A** (b, c)", "- **A** ((b), c) — x", "-**A** (b, c) — x",
    "  - **Indented** (b, c) — x", "- **A** (b, c) — **bold** and [link](https://l.example/x) and \"q\"",
    "- **A** (\u00a0b, c) — x", "- **A** (b, c\u3000) — x", "- **中文** (中国, zh) — 中文。",
    # sources
    "  Source: https://www.atlasweekly.example/2025/03/22/x-0", "  Source: https://a.example/?q=1&b=2#f", "  source: https://a.example/",
    "  Source:  https://a.example/", "  Source: HTTPS://A.example/", "  Source: /relative/path", "  Source: javascript:x",
    "  Source: https://a.example/ b", "  Source:", "  Sources: https://a.example/", "Source: https://top.example/", "  Source: https://u@h/",
    # quotes, more text, strays
    '  > "Lawmakers read the move as a signal."', "  > “Curly”", "  > «guillemets»", "  > 'single'", "  >", "  > „low“", "  > ‘x’",
    "  More text of the take.", "\tTabbed text.", "Stray line at the margin.", "", "   ", "---", "  ***", "___", "- - -",
]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_LINES), max_size=16))
def test_takes_parse_as_the_reference_parses_them(lines: list[str]) -> None:
    body = list(enumerate(lines, start=20))
    new_ctx, old_ctx = Context("p", "https://base.example/"), Context("p", "https://base.example/")
    assert sections.parse_takes(body, new_ctx) == old_parse_takes(body, old_ctx)
    assert new_ctx.findings == old_ctx.findings


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(['"', "“", "”", "«", "»", "„", "「", "」", "'", "‘", "’", " ", "a", "\u00a0"]), max_size=6).map("".join))
def test_quotes_strip_as_the_pairs_tried_in_turn_strip_them(text: str) -> None:
    assert sections.strip_quotes(text) == _old_strip_quotes(text)


def _old_list_items(body: Sequence[tuple[int, str]], ctx: Context) -> list[tuple[str, int]]:
    items: list[tuple[str, int]] = []
    for lineno, text in body:
        if not text.strip() or sections.is_rule(text):
            continue
        m = sections._LIST_ITEM.match(text)
        if m:
            items.append((m.group(1).strip(), lineno))
        elif items and text.startswith((" ", "\t")):
            src, start = items[-1]
            items[-1] = (src + "\n" + text.strip(), start)
        else:
            items.append((text.strip(), lineno))
    return items


_ITEM_LINES = ["- Whether it holds.", "-  two spaces", "- ", "-", "* star", "+ plus", "1. one", "12) twelve", "  - indented", "    - deep",
               "  more of the item", "\tTabbed.", "- - -", "---", "***", "-\ttab", "- \u00a0nbsp", "\u00a0- x", "plain line", "", "  "]


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(_ITEM_LINES), max_size=10))
def test_list_items_are_what_the_item_regex_found(lines: list[str]) -> None:
    body = list(enumerate(lines, start=5))
    assert sections.list_items(body, Context("p", None)) == _old_list_items(body, Context("p", None))
