"""Brief bytes → :class:`~publisher.briefs.model.Brief`, with lint findings.

The parser is structural: it walks the file line by line, recognises the
sections of the format (see ``docs/brief-format.md``) and runs Markdown only
on the short inline fields (paragraphs, takes, watch items). Running a
Markdown parser over whole bodies would be several times slower, and a
build of ten thousand briefs is dominated by this step.

Everything here is pure: bytes in, a value out.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from ..core.errors import BriefError
from ..core.urls import is_http_url
from .frontmatter import FrontMatter, decode, read_front_matter, split_front_matter
from .inline import FORBIDDEN_CONTROLS, PLAIN_HTTP_TOKEN, Context, has_forbidden_controls, origin, plain, short
from .model import EMPTY, Brief, Finding, Lens, Meta, Rich, Section
from .sections import (
    _CANONICAL,
    Segments,
    _QUOTE,
    check_counts,
    concat,
    heading,
    is_rule,
    list_items,
    numbered,
    paragraphs,
    parse_graph,
    parse_meta,
    parse_takes,
    section_kind,
)
from .slugs import MAX_SLUG, SLUG_RE, slugify

SUFFIXES = (".md", ".txt")
MAX_BYTES = 2 * 1024 * 1024  # a brief is a page or two; anything larger is a mistake

_META = re.compile(r"^\*\*Meta:\*\*\s*(.*)$", re.IGNORECASE)


def last_segment(path: str) -> str:
    """``PurePosixPath(path).name`` without building a path object: the last
    component, empty and '.' components skipped."""
    for part in reversed(path.split("/")):
        if part and part != ".":
            return part
    return ""


def _slug_from(fm_slug: str | None, canonical: str | None, path: str, canonical_path: str | None = None) -> str | None:
    """The front matter's slug, else the canonical URL's last segment, else the file name's.
    ``canonical_path`` is the canonical URL's path when the caller has it (see split_plain)."""
    if fm_slug:
        return fm_slug
    if canonical:
        last = unquote(last_segment(urlsplit(canonical).path if canonical_path is None else canonical_path)).lower()
        if SLUG_RE.match(last) and len(last) <= MAX_SLUG:
            return last
    stem = last_segment(path.replace("\\", "/"))
    for suffix in SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    return slugify(stem) or None


# What urlsplit finds in a plain http(s) URL: the scheme and host (and port)
# before the first '/', '?' or '#' after '//', then the path up to '?' or '#'.
_PLAIN_SPLIT = re.compile(r"(https?://[^/?#]*)([^?#]*)")


def split_plain(url: str) -> tuple[str, str] | None:
    """(``origin(url)``, ``urlsplit(url).path``) for a URL without whitespace
    that PLAIN_HTTP_TOKEN accepts (a canonical line's), else None: three
    urlsplit calls a brief, by one regex."""
    if PLAIN_HTTP_TOKEN.match(url) is None:
        return None
    parts = _PLAIN_SPLIT.match(url)
    assert parts is not None  # PLAIN_HTTP_TOKEN matched
    return parts.group(1) + "/", parts.group(2)


@dataclass
class _Outline:
    """Pass 1's result: the title, dek, Meta and Canonical lines, and each section's lines."""

    title: str | None = None
    title_line: int = 1
    dek: str | None = None
    meta_raw: tuple[str, int] | None = None
    canonical_raw: tuple[str, int] | None = None
    sections: list[tuple[str, int, Segments]] = field(default_factory=list)  # (title, line, body)


def _outline(lines: list[str], body_start: int, ctx: Context) -> _Outline:
    """Pass 1: structure. Find the title, dek, meta, canonical and the line
    ranges of each ## section; no Markdown yet.

    Only a line starting with '#', '*' or 'C'/'c' can be one of those, so only
    those lines are tested; the runs of lines between them go to their
    section as slices of the lines (Segments), not a step per line."""
    out = _Outline()
    sections = out.sections
    preamble: list[tuple[int, str]] = []
    rest = lines[body_start:]
    marks = [k for k, line in enumerate(rest) if line and line[0] in "#*Cc"]
    body: Segments | None = None  # the current section's lines
    run = 0  # the first line of rest not yet given to a section or the preamble
    for k in marks:
        lineno, line = body_start + k + 1, rest[k]
        first = line[0]
        head = meta = canon = None
        if first == "#":
            # "### lens" headings are section text: no need to read them.
            head = heading(line) if line[1:3] != "##" else None
            if head is None or head[0] > 2:
                continue
        elif first == "*":
            meta = _META.match(line.rstrip())
            if meta is None:
                continue
        elif (canon := _CANONICAL.match(line)) is None:
            continue
        # A line of structure: what came before it is done.
        if body is not None:
            if k > run:
                body.append((body_start + run + 1, rest[run:k]))
        else:
            for n, text in enumerate(rest[run:k], body_start + run + 1):
                _preamble_line(out, preamble, n, text)
        run = k + 1
        if head is not None:
            if head[0] == 1:
                if out.title is None:
                    out.title, out.title_line = plain(head[1]), lineno
                    continue
                ctx.warn(lineno, "second '# ' title treated as an unknown section")
            body = []
            sections.append((head[1], lineno, body))
        elif meta is not None:
            if out.meta_raw is not None:
                ctx.warn(lineno, "second Meta line ignored")
            else:
                out.meta_raw = (meta.group(1), lineno)
        elif canon is not None:
            out.canonical_raw = (canon.group(1), lineno)
    if body is not None:
        if len(rest) > run:
            body.append((body_start + run + 1, rest[run:]))
    else:
        for n, text in enumerate(rest[run:], body_start + run + 1):
            _preamble_line(out, preamble, n, text)
    if preamble:
        ctx.warn(preamble[0][0], "text before the first section is ignored")
    return out


def _preamble_line(out: _Outline, preamble: list[tuple[int, str]], lineno: int, line: str) -> None:
    """A line before the first section: the dek, or text to warn about."""
    stripped = line.strip()
    q = _QUOTE.match(stripped)
    if q and out.dek is None and out.title is not None:
        out.dek = plain(q.group(1)) or None
    elif stripped and not is_rule(stripped):
        preamble.append((lineno, line))


@dataclass
class _Body:
    summary: Rich = EMPTY  # frozen: one shared empty value is safe
    why: Rich = EMPTY
    watch: list[Rich] = field(default_factory=list)
    lenses: list[Lens] = field(default_factory=list)
    related: list[str] = field(default_factory=list)
    entities: list[str] = field(default_factory=list)
    extra: list[Section] = field(default_factory=list)


def _read_sections(sections: list[tuple[str, int, Segments]], ctx: Context) -> _Body:
    """Pass 2: each section's content."""
    out = _Body()
    seen: set[str] = set()
    for sec_title, lineno, body in sections:
        kind = section_kind(sec_title)
        if kind is not None and kind in seen:
            ctx.warn(lineno, f"section {sec_title!r} appears twice; the second is merged")
        if kind == "summary":
            out.summary = concat(out.summary, ctx.rich_paragraphs(paragraphs(numbered(body))))
        elif kind == "why":
            out.why = concat(out.why, ctx.rich_paragraphs(paragraphs(numbered(body))))
        elif kind == "watch":
            out.watch.extend(r for r in (ctx.rich_inline(s, ln) for s, ln in list_items(numbered(body), ctx)) if r)
        elif kind == "takes":
            out.lenses.extend(parse_takes(numbered(body), ctx))
        elif kind == "graph":
            rel, ent = parse_graph(numbered(body), ctx)
            out.related.extend(r for r in rel if r not in out.related)
            out.entities.extend(e for e in ent if e not in out.entities)
        else:
            ctx.warn(lineno, f"unknown section {sec_title!r} kept as is")
            source = "\n".join(t for _, t in numbered(body) if not is_rule(t))
            start = body[0][0] if body else lineno
            out.extra.append(Section(plain(sec_title) or "Untitled", ctx.rich_block(source, start), lineno))
        if kind is not None:
            seen.add(kind)
    return out


def read_head(data: bytes, path: str, ctx: Context) -> tuple[list[str], FrontMatter, int]:
    """Every reading's first steps: (the text's lines, its front matter, the index of the first body line).

    The size checked, the bytes decoded, forbidden control characters dropped
    (with a warning), the front matter read. Raises :class:`BriefError` for
    what stops reading altogether (too large, encoding, empty, broken front matter).
    """
    if len(data) > MAX_BYTES:
        raise BriefError(path, 1, f"file is {len(data)} bytes; a brief may be at most {MAX_BYTES}")
    text = decode(data, path)
    control = FORBIDDEN_CONTROLS.search(text) if has_forbidden_controls(data, text) else None
    if control is not None:
        ctx.warn(text[: control.start()].count("\n") + 1, "control characters removed (they are not allowed in XML or email)")
        text = FORBIDDEN_CONTROLS.sub("", text)
    lines = text.split("\n")
    fm_data, key_lines, body_start = split_front_matter(lines, ctx)
    return lines, read_front_matter(fm_data, key_lines, ctx), body_start


def lint(data: bytes, path: str, *, base_url: str | None = None) -> tuple[Brief | None, list[Finding]]:
    """Parse and collect every finding; the Brief is None when there are errors.

    Raises nothing but :class:`BriefError`, and only for faults that stop
    reading altogether (encoding, empty file, broken front matter).
    """
    ctx = Context(path, None)
    lines, fm, body_start = read_head(data, path, ctx)
    outline = _outline(lines, body_start, ctx)

    canonical = fm.canonical
    split = None  # the canonical line's URL's (origin, path), when it is a plain one
    if canonical is None and outline.canonical_raw is not None:
        raw, lineno = outline.canonical_raw
        split = split_plain(raw)
        if split is not None or is_http_url(raw):
            canonical = raw
        else:
            ctx.warn(lineno, f"dropped unsafe canonical URL {short(raw)}")
    ctx.base = split[0] if split is not None else origin(canonical) or origin(base_url)
    meta_raw = outline.meta_raw
    meta_obj = parse_meta(*meta_raw, ctx) if meta_raw else Meta()
    body = _read_sections(outline.sections, ctx)

    final_title = fm.title or outline.title
    if final_title is not None:
        final_title = plain(final_title)
    if not final_title:
        ctx.error(outline.title_line, "no title: add a '# Title' line or front matter 'title'")
    date = fm.date or meta_obj.date
    if date is None and not any(f.severity == "error" and "date" in f.message for f in ctx.findings):
        ctx.error(meta_raw[1] if meta_raw else outline.title_line, "no date: add 'date: YYYY-MM-DD' to the Meta line or front matter")
    if not body.summary:
        ctx.error(outline.title_line, "no summary: add a '## Summary' section with text")
    slug = _slug_from(fm.slug, canonical, path, split[1] if split is not None else None)
    if not slug:
        ctx.error(1, "no slug derivable: set front matter 'slug' or a canonical URL")

    check_counts(meta_obj, body.lenses, ctx)

    if any(f.severity == "error" for f in ctx.findings):
        return None, ctx.findings
    assert final_title and date is not None and slug  # guarded by the errors above
    brief = Brief(
        path=path,
        slug=slug,
        title=final_title,
        dek=outline.dek,
        meta=meta_obj,
        date=date,
        updated=fm.updated,
        status=fm.status,
        tags=fm.tags,
        canonical=canonical,
        summary=body.summary,
        why_it_matters=body.why,
        what_to_watch=tuple(body.watch),
        lenses=tuple(body.lenses),
        related=tuple(body.related),
        entities=tuple(body.entities),
        sections=tuple(body.extra),
        content_hash=hashlib.sha256(data).hexdigest(),
        findings=tuple(ctx.findings),
    )
    return brief, ctx.findings


def parse_brief(data: bytes, path: str, *, base_url: str | None = None) -> Brief:
    """Bytes of one brief → Brief; raises :class:`BriefError` on the first error."""
    brief, findings = lint(data, path, base_url=base_url)
    if brief is None:
        first = next(f for f in findings if f.severity == "error")
        raise BriefError(path, first.line, first.message)
    return brief


