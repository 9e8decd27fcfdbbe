"""The sections of a brief body: Meta line, paragraphs, lists, takes, the graph."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any

from .inline import Context, plain, short, strip_quotes
from .model import Lens, Meta, Rich, Take
from .slugs import MAX_SLUG, SLUG_RE, slugify

_H3 = re.compile(r"^###(?!#)\s+(.*?)\s*#*\s*$")
_RULE = re.compile(r"^\s{0,3}(?:-\s*){3,}$|^\s{0,3}(?:\*\s*){3,}$|^\s{0,3}(?:_\s*){3,}$")
_CANONICAL = re.compile(r"^Canonical:\s*(\S*)\s*$", re.IGNORECASE)
_LIST_ITEM = re.compile(r"^\s{0,3}(?:[-*+]|\d{1,9}[.)])\s+(.*)$")
_TAKE = re.compile(
    r"^[-*+]\s+\*\*(?P<outlet>.+?)\*\*"
    r"\s*(?:\((?P<paren>[^()]*)\))?"
    r"\s*(?:(?:—|–|--|-)\s*(?P<text>.*))?$"
)
_QUOTE = re.compile(r"^>\s?(.*)$")
_SOURCE = re.compile(r"^Source:\s*(\S*)\s*$", re.IGNORECASE)
_COUNT = re.compile(r"^(\d+)\s+([A-Za-z][\w -]*)$")
_WIKI = re.compile(r"\[\[([^\[\]]*)\]\]")

_KNOWN_SECTIONS = {
    "summary": "summary",
    "why it matters": "why",
    "what to watch": "watch",
    "regional takes": "takes",
    "across the graph": "graph",
}


def is_rule(text: str) -> bool:
    """A thematic break (---, ***, ___); cheap first-character test first."""
    stripped = text.lstrip()
    return bool(stripped) and stripped[0] in "-*_" and _RULE.match(text) is not None


def section_kind(title: str) -> str | None:
    """Which known section a ``## title`` is, tolerant of case and a suffix."""
    norm = re.sub(r"\s+", " ", title.strip().lower())
    for prefix, kind in _KNOWN_SECTIONS.items():
        if norm == prefix or norm.startswith(prefix + " ") or norm.startswith(prefix + "("):
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


def paragraphs(body: Sequence[tuple[int, str]]) -> list[tuple[str, int]]:
    paras: list[tuple[str, int]] = []
    current: list[str] = []
    start = 0
    for lineno, text in body:
        if not text.strip() or is_rule(text):
            if current:
                paras.append(("\n".join(current), start))
                current = []
            continue
        if not current:
            start = lineno
        current.append(text.strip())
    if current:
        paras.append(("\n".join(current), start))
    return paras


def list_items(body: Sequence[tuple[int, str]], ctx: Context) -> list[tuple[str, int]]:
    items: list[tuple[str, int]] = []
    for lineno, text in body:
        if not text.strip() or is_rule(text):
            continue
        m = _LIST_ITEM.match(text)
        if m:
            items.append((m.group(1).strip(), lineno))
        elif items and text.startswith((" ", "\t")):
            src, start = items[-1]
            items[-1] = (src + "\n" + text.strip(), start)
        else:
            items.append((text.strip(), lineno))
    return items


def _split_region_language(paren: str | None) -> tuple[str, str]:
    if not paren:
        return "", ""
    region, sep, lang = paren.rpartition(",")
    if not sep:
        return paren.strip(), ""
    return region.strip(), lang.strip()


def parse_takes(body: Sequence[tuple[int, str]], ctx: Context) -> list[Lens]:
    lenses: list[tuple[str, int, list[Take]]] = []
    pending: dict[str, Any] | None = None

    def flush() -> None:
        nonlocal pending
        if pending is None:
            return
        if not lenses:
            ctx.warn(pending["line"], "take before any '### lens' heading; grouped as 'unlabelled'")
            lenses.append(("unlabelled", pending["line"], []))
        source = ctx.safe_url(pending["source"], pending["source_line"], "source URL") if pending["source"] else None
        if source is None and not pending["source"]:
            ctx.warn(pending["line"], f"take by {pending['outlet']!r} has no source URL")
        text = ctx.rich_inline("\n".join(pending["text"]), pending["line"])
        quote = strip_quotes(" ".join(pending["quote"])) if pending["quote"] else None
        lenses[-1][2].append(
            Take(pending["outlet"], pending["region"], pending["language"], text, quote or None, source, pending["line"])
        )
        pending = None

    for lineno, text in body:
        stripped = text.strip()
        # is_rule inlined: most lines here are takes, sources and quotes.
        if not stripped or (stripped[0] in "-*_" and _RULE.match(text) is not None):
            continue
        h3 = _H3.match(text) if stripped[0] == "#" else None
        if h3:
            flush()
            name = plain(h3.group(1)) or "unlabelled"
            lenses.append((name, lineno, []))
            continue
        m = _TAKE.match(text) if text[0] in "-*+" else None
        if m:
            flush()
            region, lang = _split_region_language(m.group("paren"))
            pending = {
                "outlet": plain(m.group("outlet")),
                "region": plain(region),
                "language": plain(lang),
                "text": [m.group("text") or ""],
                "quote": [],
                "source": "",
                "source_line": lineno,
                "line": lineno,
            }
            continue
        if pending is not None:
            q = _QUOTE.match(stripped) if stripped[0] == ">" else None
            s = _SOURCE.match(stripped) if stripped[0] in "Ss" else None
            if s:
                if pending["source"]:
                    ctx.warn(lineno, "second Source line for one take; the first is kept")
                else:
                    pending["source"] = s.group(1)
                    pending["source_line"] = lineno
                continue
            if q:
                pending["quote"].append(q.group(1).strip())
                continue
            if text.startswith((" ", "\t")):
                pending["text"].append(stripped)
                continue
        ctx.warn(lineno, f"unrecognised line in Regional takes: {short(stripped)}")
    flush()
    out: list[Lens] = []
    for name, line, takes in lenses:
        if not takes:
            ctx.warn(line, f"lens {name!r} has no takes")
            continue
        out.append(Lens(name, tuple(takes), line))
    return out


def parse_graph(body: Sequence[tuple[int, str]], ctx: Context) -> tuple[list[str], list[str]]:
    related: list[str] = []
    entities: list[str] = []
    for lineno, text in body:
        stripped = text.strip()
        if not stripped or is_rule(text) or _CANONICAL.match(stripped):
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
    return Rich(a.html + "\n" + b.html, a.text + "\n\n" + b.text, a.links + b.links)


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
