"""Brief files → :class:`~publisher.model.Brief`, with lint findings.

The parser is structural: it walks the file line by line, recognises the
sections of the format (see ``docs/brief-format.md``) and runs Markdown only
on the short inline fields (paragraphs, takes, watch items). Running a
Markdown parser over whole bodies would be several times slower, and a
build of ten thousand briefs is dominated by this step.

Everything here is pure: bytes in, a value out. The only I/O helper,
:func:`load_brief`, reads one file and hands the bytes over.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, cast
from urllib.parse import unquote, urljoin, urlsplit

import yaml
from frontmatter.default_handlers import YAMLHandler
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.token import Token

from .errors import BriefError
from .model import Brief, Finding, Lens, Link, Meta, Rich, Section, Severity, Status, Take

SUFFIXES = (".md", ".txt")
MAX_BYTES = 2 * 1024 * 1024  # a brief is a page or two; anything larger is a mistake

SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MAX_SLUG = 120

FRONT_MATTER_KEYS = ("title", "slug", "date", "updated", "status", "tags", "canonical")

# XML 1.0 forbids these; they would make every feed that carries them invalid.
_FORBIDDEN_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

_H1 = re.compile(r"^#(?!#)\s+(.*?)\s*#*\s*$")
_H2 = re.compile(r"^##(?!#)\s+(.*?)\s*#*\s*$")
_H3 = re.compile(r"^###(?!#)\s+(.*?)\s*#*\s*$")
_RULE = re.compile(r"^\s{0,3}(?:-\s*){3,}$|^\s{0,3}(?:\*\s*){3,}$|^\s{0,3}(?:_\s*){3,}$")
_META = re.compile(r"^\*\*Meta:\*\*\s*(.*)$", re.IGNORECASE)
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
# Most source URLs look like this; they need no urlsplit (slow) to be trusted.
_PLAIN_HTTP_URL = re.compile(r"^https?://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::\d{1,5})?(?:[/?#][^\s]*)?$")
_WS = re.compile(r"\s+")
_WS_RUN = re.compile(r"\s\s|[^\S ]")  # any whitespace other than single spaces
_FM_KEY_LINE = re.compile(r"^([A-Za-z_][\w-]*)\s*:")

# Inline Markdown is only needed when one of these appears; otherwise the
# text is escaped directly (most takes are plain prose). CommonMark has no
# bare-URL autolinks, so plain URLs need no parser.
_MARKDOWN_CHARS = re.compile(r"[\\`*_\[\]<>&!]")
# The one construct common enough to deserve its own fast path: a plain
# [text](url) link whose text and URL hold no other Markdown. Anything
# fancier (titles, nesting, parentheses in URLs) goes to markdown-it.
_SIMPLE_LINK = re.compile(r"\[([^\[\]\\`*_<>&!]*)\]\(([^()\s\\<>]+)\)")
_NOT_SIMPLE = re.compile(r"[\\`*_<>&!\[\]]")

_md = MarkdownIt("commonmark", {"html": False, "typographer": False})
# markdown-it silently turns javascript:/data: links into literal text; we
# want to see every link so that _Ctx.safe_url can drop it *with a warning*.
_md.validateLink = lambda url: True  # type: ignore[method-assign]

_KNOWN_SECTIONS = {
    "summary": "summary",
    "why it matters": "why",
    "what to watch": "watch",
    "regional takes": "takes",
    "across the graph": "graph",
}


def _is_rule(text: str) -> bool:
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


def slugify(text: str) -> str:
    """A path-safe ``[a-z0-9-]+`` form of ``text`` ('' when nothing is left)."""
    norm = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", norm.lower()).strip("-")[:MAX_SLUG].strip("-")


def tag_slug(name: str) -> str:
    """The path-safe key of a tag or entity (its feed lives at ``tags/<key>/``).

    ASCII-able names slugify ("Alibaba Qwen" → ``alibaba-qwen``); names in
    other scripts ("東京", "الجزيرة") keep a stable key from a hash of their
    case-folded text, so they still get a feed. '' only when the name has no
    letter or digit at all.
    """
    slug = slugify(name)
    if slug:
        return slug
    folded = unicodedata.normalize("NFKC", name).casefold().strip()
    if not any(ch.isalnum() for ch in folded):
        return ""
    return "u-" + hashlib.sha256(folded.encode("utf-8")).hexdigest()[:12]


def is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _origin(url: str | None) -> str | None:
    if not url or not is_http_url(url):
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/"


@dataclass
class _Ctx:
    """Per-file parsing state: where we are and what we found."""

    path: str
    base: str | None  # origin used to resolve relative links
    findings: list[Finding] = field(default_factory=list)

    def add(self, line: int | None, severity: Severity, message: str) -> None:
        self.findings.append(Finding(self.path, line, severity, message))

    def warn(self, line: int | None, message: str) -> None:
        self.add(line, "warning", message)

    def error(self, line: int | None, message: str) -> None:
        self.add(line, "error", message)

    def safe_url(self, raw: str, line: int, what: str) -> str | None:
        """Absolute http(s) URL for ``raw``, or None (with a warning)."""
        raw = raw.strip()
        if not raw:
            return None
        if _PLAIN_HTTP_URL.match(raw):
            return raw
        try:
            parts = urlsplit(raw)
        except ValueError:
            self.warn(line, f"dropped malformed {what} {_short(raw)}")
            return None
        if parts.scheme:
            if parts.scheme.lower() in ("http", "https") and parts.hostname:
                return raw
            self.warn(line, f"dropped unsafe {what} {_short(raw)}")
            return None
        if raw.startswith("//"):
            self.warn(line, f"dropped protocol-relative {what} {_short(raw)}")
            return None
        if self.base is None:
            self.warn(line, f"dropped relative {what} {_short(raw)}: no canonical URL or base_url to resolve it")
            return None
        return urljoin(self.base, raw)

    # -- inline Markdown ------------------------------------------------

    def rich_inline(self, source: str, line: int) -> Rich:
        source = source.strip()
        if not source:
            return Rich("", "")
        if not _MARKDOWN_CHARS.search(source):
            return Rich(escapeHtml(source), source.replace("\n", " "))
        if not _NOT_SIMPLE.search(_SIMPLE_LINK.sub("", source)):
            return self._simple_links(source, line)
        return self.markdown_inline(source, line)

    def markdown_inline(self, source: str, line: int) -> Rich:
        """The general path: markdown-it's inline parser, then link checks."""
        tokens = _md.parseInline(source)
        html_out, text, links = self._render_inline(tokens[0].children or [], line)
        return Rich(html_out, text, links)

    def _simple_links(self, source: str, line: int) -> Rich:
        """[text](url) links in otherwise plain text, rendered as markdown-it would."""
        html_parts: list[str] = []
        text_parts: list[str] = []
        links: list[Link] = []
        pos = 0
        for m in _SIMPLE_LINK.finditer(source):
            before = source[pos : m.start()]
            html_parts.append(escapeHtml(before))
            text_parts.append(before)
            label = m.group(1)
            url = self.safe_url(m.group(2), line, "link")
            if url is None:
                html_parts.append(escapeHtml(label))
            else:
                href = _md.normalizeLink(url)
                html_parts.append(f'<a href="{escapeHtml(href)}">{escapeHtml(label)}</a>')
                links.append(Link(label.replace("\n", " ").strip(), href))
            text_parts.append(label)
            pos = m.end()
        html_parts.append(escapeHtml(source[pos:]))
        text_parts.append(source[pos:])
        return Rich("".join(html_parts), "".join(text_parts).replace("\n", " ").strip(), tuple(links))

    def rich_paragraphs(self, paragraphs: Sequence[tuple[str, int]]) -> Rich:
        html_parts: list[str] = []
        text_parts: list[str] = []
        links: list[Link] = []
        for source, line in paragraphs:
            rich = self.rich_inline(source, line)
            if not rich:
                continue
            html_parts.append(f"<p>{rich.html}</p>")
            text_parts.append(rich.text)
            links.extend(rich.links)
        return Rich("\n".join(html_parts), "\n\n".join(text_parts), tuple(links))

    def rich_block(self, source: str, line: int) -> Rich:
        """Generic Markdown for unknown sections (lists, paragraphs...)."""
        tokens = _md.parse(source)
        links: list[Link] = []
        texts: list[str] = []
        for tok in tokens:
            if tok.type == "inline":
                h, t, ls = self._render_inline(tok.children or [], line + (tok.map[0] if tok.map else 0))
                tok.children = [Token("html_inline", "", 0, content=h)]
                texts.append(t)
                links.extend(ls)
            elif tok.type in ("fence", "code_block"):
                texts.append(tok.content.rstrip("\n"))
        # html_inline tokens are only ever our own, already-escaped output
        # (the renderer emits their content as is; html=False only affects parsing).
        rendered = _md.renderer.render(tokens, _md.options, {})
        return Rich(rendered.strip(), "\n\n".join(t for t in texts if t), tuple(links))

    def _render_inline(self, children: list[Token], line: int) -> tuple[str, str, tuple[Link, ...]]:
        out: list[Token] = []
        text_parts: list[str] = []
        links: list[Link] = []
        link_stack: list[tuple[bool, int, str]] = []  # (kept, start index in text_parts, url)
        for tok in children:
            if tok.type == "link_open":
                url = self.safe_url(str(tok.attrs.get("href", "")), line, "link")
                if url is not None:
                    tok.attrs = {"href": url}
                    out.append(tok)
                link_stack.append((url is not None, len(text_parts), url or ""))
                continue
            if tok.type == "link_close":
                kept, start, url = link_stack.pop() if link_stack else (False, 0, "")
                if kept:
                    out.append(tok)
                    links.append(Link("".join(text_parts[start:]).strip(), url))
                continue
            if tok.type == "image":
                # Images never survive into emails or feeds: keep their alt text.
                alt = tok.content or "".join(c.content for c in tok.children or [])
                out.append(Token("text", "", 0, content=alt))
                text_parts.append(alt)
                continue
            if tok.type in ("html_inline", "html_block"):
                # html=False means this cannot happen; keep the guarantee anyway.
                out.append(Token("text", "", 0, content=tok.content))
                text_parts.append(tok.content)
                continue
            out.append(tok)
            if tok.type in ("text", "code_inline"):
                text_parts.append(tok.content)
            elif tok.type == "softbreak":
                text_parts.append(" ")
            elif tok.type == "hardbreak":
                text_parts.append("\n")
        rendered = cast(Any, _md.renderer).renderInline(out, _md.options, {})
        return rendered, "".join(text_parts).strip(), tuple(links)


def _short(text: str, limit: int = 60) -> str:
    text = text.replace("\n", " ")
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _plain(text: str) -> str:
    """Plain form of a one-line Markdown-ish field (title, outlet, dek)."""
    text = text.strip()
    if "*" in text or "_" in text or "`" in text or "\\" in text or "&" in text or "[" in text:
        tokens = _md.parseInline(text)
        parts: list[str] = []
        for tok in tokens[0].children or []:
            if tok.type in ("text", "code_inline"):
                parts.append(tok.content)
            elif tok.type in ("softbreak", "hardbreak"):
                parts.append(" ")
            elif tok.type == "image":
                parts.append(tok.content)
        text = "".join(parts).strip()
    return _WS.sub(" ", text) if _WS_RUN.search(text) else text


def _strip_quotes(text: str) -> str:
    text = text.strip()
    pairs = (('"', '"'), ("“", "”"), ("«", "»"), ("„", "“"), ("「", "」"), ("'", "'"), ("‘", "’"))
    for left, right in pairs:
        if len(text) >= 2 and text.startswith(left) and text.endswith(right):
            return text[len(left) : -len(right)].strip()
    return text


# -- front matter ---------------------------------------------------------


def _decode(data: bytes, path: str) -> str:
    if not data.strip():
        raise BriefError(path, 1, "empty file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BriefError(path, line, f"not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})") from exc
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _split_front_matter(lines: list[str], ctx: _Ctx) -> tuple[dict[str, Any], dict[str, int], int]:
    """(metadata, key → line, index of the first body line)."""
    if not lines or lines[0].rstrip() != "---":
        return {}, {}, 0
    end = next((i for i in range(1, len(lines)) if lines[i].rstrip() in ("---", "...")), None)
    if end is None:
        raise BriefError(ctx.path, 1, "front matter opened with '---' is never closed")
    fm_text = "\n".join(lines[1:end])
    try:
        data = YAMLHandler().load(fm_text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BriefError(ctx.path, line, f"bad front matter YAML: {problem}") from exc
    except RecursionError as exc:
        raise BriefError(ctx.path, 2, "bad front matter YAML: nested too deeply") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BriefError(ctx.path, 2, "bad front matter YAML: expected key: value pairs")
    key_lines: dict[str, int] = {}
    for i in range(1, end):
        m = _FM_KEY_LINE.match(lines[i])
        if m:
            key_lines.setdefault(m.group(1), i + 1)
    return data, key_lines, end + 1


def _fm_datetime(value: Any, key: str, line: int, ctx: _Ctx) -> dt.date | dt.datetime | None:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip()) if ("T" in value or " " in value.strip()) else dt.date.fromisoformat(value.strip())
        except ValueError:
            ctx.error(line, f"front matter {key!r}: not a date or datetime: {_short(value)}")
            return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            ctx.error(line, f"front matter {key!r}: datetime needs a time zone (e.g. 2026-06-24T09:00:00+00:00)")
            return None
        return value
    if isinstance(value, dt.date):
        return value
    ctx.error(line, f"front matter {key!r}: expected a date, got {type(value).__name__}")
    return None


@dataclass
class _FrontMatter:
    title: str | None = None
    slug: str | None = None
    date: dt.date | dt.datetime | None = None
    updated: dt.datetime | None = None
    status: Status = "published"
    tags: tuple[str, ...] = ()
    canonical: str | None = None


def _read_front_matter(data: dict[str, Any], key_lines: dict[str, int], ctx: _Ctx) -> _FrontMatter:
    fm = _FrontMatter()
    for key in data:
        if str(key) not in FRONT_MATTER_KEYS:
            ctx.warn(key_lines.get(str(key), 2), f"unknown front matter key {str(key)!r} ignored")

    def line(key: str) -> int:
        return key_lines.get(key, 2)

    def string(key: str) -> str | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            ctx.error(line(key), f"front matter {key!r}: expected text, got {type(value).__name__}")
            return None
        return str(value).strip() or None

    fm.title = string("title")
    fm.slug = string("slug")
    if fm.slug is not None and not (SLUG_RE.match(fm.slug) and len(fm.slug) <= MAX_SLUG):
        ctx.error(line("slug"), f"front matter 'slug' must match [a-z0-9-]+ (at most {MAX_SLUG}), got {_short(fm.slug)}")
        fm.slug = None
    if "date" in data:
        fm.date = _fm_datetime(data["date"], "date", line("date"), ctx)
    if "updated" in data:
        upd = _fm_datetime(data["updated"], "updated", line("updated"), ctx)
        if isinstance(upd, dt.datetime):
            fm.updated = upd
        elif upd is not None:
            ctx.error(line("updated"), "front matter 'updated' needs a time and a time zone")
    status = data.get("status", "published")
    if status in ("draft", "published"):
        fm.status = cast(Status, status)
    else:
        ctx.error(line("status"), f"front matter 'status' must be draft or published, got {_short(str(status))}")
    tags = data.get("tags", [])
    if isinstance(tags, str):
        tags = [t for t in (p.strip() for p in tags.split(",")) if t]
    if not isinstance(tags, list) or not all(isinstance(t, (str, int)) and not isinstance(t, bool) for t in tags):
        ctx.error(line("tags"), "front matter 'tags' must be a list of words")
    else:
        clean = []
        for t in tags:
            t = _FORBIDDEN_CONTROLS.sub("", str(t)).strip()
            if not tag_slug(t):
                ctx.warn(line("tags"), f"tag {_short(t)} has no letters or digits; ignored")
            elif t not in clean:
                clean.append(t)
        fm.tags = tuple(clean)
    canonical = string("canonical")
    if canonical is not None:
        if is_http_url(canonical):
            fm.canonical = canonical
        else:
            ctx.warn(line("canonical"), f"dropped unsafe canonical URL {_short(canonical)}")
    return fm


# -- body -----------------------------------------------------------------


def _parse_meta(raw: str, line: int, ctx: _Ctx) -> Meta:
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
                    ctx.error(line, f"Meta date is not YYYY-MM-DD: {_short(value)}")
            else:
                heads = tuple(h.strip() for h in value.split(",") if h.strip())
            continue
        m = _COUNT.match(item)
        if m:
            counts.append((m.group(2).strip().lower(), int(m.group(1))))
        elif sep:
            extra.append((key.strip(), value.strip()))
        else:
            ctx.warn(line, f"unrecognised Meta item {_short(item)}")
    return Meta(type_, date, heads, tuple(counts), tuple(extra), line)


def _paragraphs(body: Sequence[tuple[int, str]]) -> list[tuple[str, int]]:
    paras: list[tuple[str, int]] = []
    current: list[str] = []
    start = 0
    for lineno, text in body:
        if not text.strip() or _is_rule(text):
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


def _list_items(body: Sequence[tuple[int, str]], ctx: _Ctx) -> list[tuple[str, int]]:
    items: list[tuple[str, int]] = []
    for lineno, text in body:
        if not text.strip() or _is_rule(text):
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


def _parse_takes(body: Sequence[tuple[int, str]], ctx: _Ctx) -> list[Lens]:
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
        quote = _strip_quotes(" ".join(pending["quote"])) if pending["quote"] else None
        lenses[-1][2].append(
            Take(pending["outlet"], pending["region"], pending["language"], text, quote or None, source, pending["line"])
        )
        pending = None

    for lineno, text in body:
        stripped = text.strip()
        if not stripped or _is_rule(text):
            continue
        h3 = _H3.match(text) if stripped[0] == "#" else None
        if h3:
            flush()
            name = _plain(h3.group(1)) or "unlabelled"
            lenses.append((name, lineno, []))
            continue
        m = _TAKE.match(text) if text[0] in "-*+" else None
        if m:
            flush()
            region, lang = _split_region_language(m.group("paren"))
            pending = {
                "outlet": _plain(m.group("outlet")),
                "region": _plain(region),
                "language": _plain(lang),
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
        ctx.warn(lineno, f"unrecognised line in Regional takes: {_short(stripped)}")
    flush()
    out: list[Lens] = []
    for name, line, takes in lenses:
        if not takes:
            ctx.warn(line, f"lens {name!r} has no takes")
            continue
        out.append(Lens(name, tuple(takes), line))
    return out


def _parse_graph(body: Sequence[tuple[int, str]], ctx: _Ctx) -> tuple[list[str], list[str]]:
    related: list[str] = []
    entities: list[str] = []
    for lineno, text in body:
        stripped = text.strip()
        if not stripped or _is_rule(text) or _CANONICAL.match(stripped):
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
                    ctx.warn(lineno, f"related story {_short(raw)} is not a valid slug; ignored")
        elif sep and key == "entities":
            for name in value.split(","):
                name = _plain(name)
                if name and name not in entities:
                    entities.append(name)
        else:
            ctx.warn(lineno, f"unrecognised line in Across the graph: {_short(stripped)}")
    return related, entities


def _slug_from(fm_slug: str | None, canonical: str | None, path: str) -> str | None:
    if fm_slug:
        return fm_slug
    if canonical:
        last = unquote(PurePosixPath(urlsplit(canonical).path).name).lower()
        if SLUG_RE.match(last) and len(last) <= MAX_SLUG:
            return last
    stem = PurePosixPath(path.replace("\\", "/")).name
    for suffix in SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    return slugify(stem) or None


def lint(data: bytes, path: str, *, base_url: str | None = None) -> tuple[Brief | None, list[Finding]]:
    """Parse and collect every finding; the Brief is None when there are errors.

    Raises nothing but :class:`BriefError`, and only for faults that stop
    reading altogether (encoding, empty file, broken front matter).
    """
    ctx = _Ctx(path, None)
    if len(data) > MAX_BYTES:
        raise BriefError(path, 1, f"file is {len(data)} bytes; a brief may be at most {MAX_BYTES}")
    text = _decode(data, path)
    control = _FORBIDDEN_CONTROLS.search(text)
    if control is not None:
        ctx.warn(text[: control.start()].count("\n") + 1, "control characters removed (they are not allowed in XML or email)")
        text = _FORBIDDEN_CONTROLS.sub("", text)
    lines = text.split("\n")
    fm_data, key_lines, body_start = _split_front_matter(lines, ctx)
    fm = _read_front_matter(fm_data, key_lines, ctx)

    # Pass 1: structure. Find the title, dek, meta, canonical and the line
    # ranges of each ## section; no Markdown yet.
    title: str | None = None
    title_line = 1
    dek: str | None = None
    meta_raw: tuple[str, int] | None = None
    canonical_raw: tuple[str, int] | None = None
    sections: list[tuple[str, int, list[tuple[int, str]]]] = []  # (title, line, body)
    preamble: list[tuple[int, str]] = []
    for idx in range(body_start, len(lines)):
        lineno = idx + 1
        line = lines[idx]
        first = line[:1]
        # Dispatch on the first character: most lines are prose and need no regex.
        canon = _CANONICAL.match(line) if first in "Cc" else None
        if canon:
            canonical_raw = (canon.group(1), lineno)
            continue
        meta = _META.match(line.rstrip()) if first == "*" else None
        if meta:
            if meta_raw is not None:
                ctx.warn(lineno, "second Meta line ignored")
            else:
                meta_raw = (meta.group(1), lineno)
            continue
        if first != "#":
            if sections:
                sections[-1][2].append((lineno, line))
                continue
            h1 = h2 = None
        else:
            h1 = _H1.match(line)
        if h1:
            if title is None:
                title, title_line = _plain(h1.group(1)), lineno
            else:
                ctx.warn(lineno, "second '# ' title treated as an unknown section")
                sections.append((h1.group(1), lineno, []))
            continue
        h2 = _H2.match(line) if first == "#" else None
        if h2:
            sections.append((h2.group(1), lineno, []))
            continue
        stripped = line.strip()
        if sections:
            sections[-1][2].append((lineno, line))
        else:
            q = _QUOTE.match(stripped)
            if q and dek is None and title is not None:
                dek = _plain(q.group(1)) or None
            elif stripped and not _is_rule(stripped):
                preamble.append((lineno, line))
    if preamble:
        ctx.warn(preamble[0][0], "text before the first section is ignored")

    canonical = fm.canonical
    if canonical is None and canonical_raw is not None:
        raw, lineno = canonical_raw
        if is_http_url(raw):
            canonical = raw
        else:
            ctx.warn(lineno, f"dropped unsafe canonical URL {_short(raw)}")
    ctx.base = _origin(canonical) or _origin(base_url)

    meta_obj = _parse_meta(*meta_raw, ctx) if meta_raw else Meta()

    # Pass 2: each section's content.
    summary = why = Rich("", "")
    watch: list[Rich] = []
    lenses: list[Lens] = []
    related: list[str] = []
    entities: list[str] = []
    extra: list[Section] = []
    seen: set[str] = set()
    for sec_title, lineno, body in sections:
        kind = section_kind(sec_title)
        if kind is not None and kind in seen:
            ctx.warn(lineno, f"section {sec_title!r} appears twice; the second is merged")
        if kind == "summary":
            summary = _concat(summary, ctx.rich_paragraphs(_paragraphs(body)))
        elif kind == "why":
            why = _concat(why, ctx.rich_paragraphs(_paragraphs(body)))
        elif kind == "watch":
            watch.extend(r for r in (ctx.rich_inline(s, ln) for s, ln in _list_items(body, ctx)) if r)
        elif kind == "takes":
            lenses.extend(_parse_takes(body, ctx))
        elif kind == "graph":
            rel, ent = _parse_graph(body, ctx)
            related.extend(r for r in rel if r not in related)
            entities.extend(e for e in ent if e not in entities)
        else:
            ctx.warn(lineno, f"unknown section {sec_title!r} kept as is")
            source = "\n".join(t for _, t in body if not _is_rule(t))
            start = body[0][0] if body else lineno
            extra.append(Section(_plain(sec_title) or "Untitled", ctx.rich_block(source, start), lineno))
        if kind is not None:
            seen.add(kind)

    final_title = fm.title or title
    if final_title is not None:
        final_title = _plain(final_title)
    if not final_title:
        ctx.error(title_line, "no title: add a '# Title' line or front matter 'title'")
    date = fm.date or meta_obj.date
    if date is None and not any(f.severity == "error" and "date" in f.message for f in ctx.findings):
        ctx.error(meta_raw[1] if meta_raw else title_line, "no date: add 'date: YYYY-MM-DD' to the Meta line or front matter")
    if not summary:
        ctx.error(title_line, "no summary: add a '## Summary' section with text")
    slug = _slug_from(fm.slug, canonical, path)
    if not slug:
        ctx.error(1, "no slug derivable: set front matter 'slug' or a canonical URL")

    _check_counts(meta_obj, lenses, ctx)

    if any(f.severity == "error" for f in ctx.findings):
        return None, ctx.findings
    assert final_title and date is not None and slug  # guarded by the errors above
    brief = Brief(
        path=path,
        slug=slug,
        title=final_title,
        dek=dek,
        meta=meta_obj,
        date=date,
        updated=fm.updated,
        status=fm.status,
        tags=fm.tags,
        canonical=canonical,
        summary=summary,
        why_it_matters=why,
        what_to_watch=tuple(watch),
        lenses=tuple(lenses),
        related=tuple(related),
        entities=tuple(entities),
        sections=tuple(extra),
        content_hash=hashlib.sha256(data).hexdigest(),
        findings=tuple(ctx.findings),
    )
    return brief, ctx.findings


def _concat(a: Rich, b: Rich) -> Rich:
    if not a:
        return b
    if not b:
        return a
    return Rich(a.html + "\n" + b.html, a.text + "\n\n" + b.text, a.links + b.links)


def _check_counts(meta: Meta, lenses: Sequence[Lens], ctx: _Ctx) -> None:
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


def parse_brief(data: bytes, path: str, *, base_url: str | None = None) -> Brief:
    """Bytes of one brief → Brief; raises :class:`BriefError` on the first error."""
    brief, findings = lint(data, path, base_url=base_url)
    if brief is None:
        first = next(f for f in findings if f.severity == "error")
        raise BriefError(path, first.line, first.message)
    return brief


def load_brief(path: str | Path, *, base_url: str | None = None) -> Brief:
    """Read and parse one file; unreadable files become BriefError too."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BriefError(str(path), None, f"unreadable: {exc.strerror or exc}") from exc
    return parse_brief(data, str(path), base_url=base_url)


def is_brief_name(name: str) -> bool:
    """A file the folder scan should read: .md/.txt, not hidden, not an editor temp file."""
    if name.startswith((".", "#", "~")) or name.endswith(("~", "#")):
        return False
    return name.lower().endswith(SUFFIXES)


def find_briefs(paths: Iterable[Path]) -> list[Path]:
    """Files named directly, plus brief files under folders (sorted, recursive)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file() and is_brief_name(q.name) and not any(part.startswith(".") for part in q.relative_to(p).parts)))
        else:
            out.append(p)
    return out
