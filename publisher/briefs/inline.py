"""Inline Markdown for the short fields of a brief, and the per-file parse context.

Only inline fields (paragraphs, takes, watch items) run through Markdown;
plain prose, the common case, is escaped directly, and a plain
``[text](url)`` link takes a fast path that gives markdown-it's output.
Every link is checked by :meth:`Context.safe_url`: only http(s) survives.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urljoin, urlsplit

from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.token import Token

from ..core.urls import is_http_url
from .model import EMPTY, Finding, Link, Rich, Severity, rich

# XML 1.0 forbids these; they would make every feed that carries them invalid.
FORBIDDEN_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_CONTROL_BYTES = bytes(c for c in range(0x20) if chr(c) not in "\t\n\r")


def has_forbidden_controls(data: bytes, text: str) -> bool:
    """Whether FORBIDDEN_CONTROLS occurs in ``text``, decoded from the UTF-8 ``data``.

    The regex walks a brief in tens of microseconds (its class holds non-ASCII
    characters); in UTF-8 the ASCII controls are their own bytes, which
    ``bytes.translate`` drops at memory speed, and the two non-characters are
    single-character searches of the text.
    """
    return len(data.translate(None, _CONTROL_BYTES)) != len(data) or "\ufffe" in text or "\uffff" in text


# Most source URLs look like this; they need no urlsplit (slow) to be trusted.
PLAIN_HTTP = r"https?://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::\d{1,5})?(?:[/?#][^\s]*)?"
PLAIN_HTTP_URL = re.compile(f"^{PLAIN_HTTP}$")
# The same test for a string known to hold no whitespace, where [^\s]* is .*
# (which the regex engine runs several times faster on a long URL).
PLAIN_HTTP_TOKEN = re.compile(PLAIN_HTTP.replace("[^\\s]*", ".*") + r"\Z", re.DOTALL)
# URLs that markdown-it's normalizeLink returns unchanged (lower-case host,
# only characters it never encodes, no '@' to be read as credentials): the
# common case skips its parse-and-format round trip, a sixth of a parse.
_NORMAL_LINK = re.compile(r"https?://[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::\d{1,5})?(?:[/?#][A-Za-z0-9;/?:&=+$,\-_.!~*'()#]*)?")
# A site-relative path urljoin resolves against an origin ("https://host/")
# by concatenation: no '//' for it to collapse, no dot segment to remove,
# no query, fragment, parameters or characters for it to treat specially.
_ROOT_PATH = re.compile(r"/(?:[A-Za-z0-9_~-][A-Za-z0-9._~-]*(?:/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*/?)?\Z")
_ORIGIN = re.compile(r"https?://[^/?#\s\[\]]+/\Z")
_WS = re.compile(r"\s+")
_WS_RUN = re.compile(r"\s\s|[^\S ]")  # any whitespace other than single spaces
# Nothing for plain() to do when none of these occurs (no Markdown that changes
# the text, no whitespace other than a space) and no two spaces in a row: what
# r"[*_`\\&\[]|\s\s|[^\S ]" finds, in one character class, several times faster
# than the alternation. OTHER_SPACE is every character str.isspace() accepts
# but the space (a test checks it against all of Unicode).
OTHER_SPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_PLAIN_CHARS = re.compile(r"[*_`\\&\[" + OTHER_SPACE + "]")


def is_plain(text: str) -> bool:
    """Whether ``plain(text)`` is ``text.strip()``: nothing to unmark or fold."""
    return _PLAIN_CHARS.search(text) is None and "  " not in text


# The one construct common enough to deserve its own fast path: a plain
# [text](url) link whose text and URL hold no other Markdown. Anything
# fancier (titles, nesting, parentheses in URLs) goes to markdown-it.
_SIMPLE_LINK = re.compile(r"\[([^\[\]\\`*_<>&!]*)\]\(([^()\s\\<>]+)\)")
_NOT_SIMPLE = re.compile(r"[\\`*_<>&!\[\]]")

# markdown-it is linear on hostile text, but at 10-15 µs per byte and one
# token per delimiter: a megabyte of brackets or emphasis runs would cost
# seconds and hundreds of MB. Real prose carries a few links and emphases per
# paragraph, so a field with more Markdown punctuation than this is not prose:
# it is published as escaped plain text, with a warning, at the cost of a copy.
MAX_MARKUP = 1000
# The same bound for a whole file: many fields just under MAX_MARKUP each.
MAX_FILE_MARKUP = 20 * MAX_MARKUP
# Inline Markdown is only needed when one of these appears (markup_count is
# not 0); otherwise the text is escaped directly (most takes are plain prose).
# CommonMark has no bare-URL autolinks, so plain URLs need no parser.
_MARKUP_CHARS = "\\`*_[]<>&!"
_MARKUP_BYTES = _MARKUP_CHARS.encode("ascii")


def markup_count(source: str) -> int:
    """Markdown punctuation in ``source``.

    Every such character is ASCII, so it is one byte of the UTF-8 form and
    ``bytes.translate`` drops them all in one pass at memory speed (ten
    ``str.count`` passes cost four times as much). Surrogates, which no
    decoded brief holds, are passed through as non-ASCII bytes.
    """
    raw = source.encode("utf-8", "surrogatepass")
    return len(raw) - len(raw.translate(None, _MARKUP_BYTES))


_md = MarkdownIt("commonmark", {"html": False, "typographer": False})
# markdown-it silently turns javascript:/data: links into literal text; we
# want to see every link so that _Ctx.safe_url can drop it *with a warning*.
_md.validateLink = lambda url: True  # type: ignore[method-assign]


def origin(url: str | None) -> str | None:
    if not url or not is_http_url(url):
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/"


@dataclass
class Context:
    """Per-file parsing state: where we are and what we found."""

    path: str
    base: str | None  # origin used to resolve relative links
    findings: list[Finding] = field(default_factory=list)
    markup_spent: int = 0  # Markdown punctuation handed to markdown-it so far

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
        if PLAIN_HTTP_URL.match(raw):
            return raw
        if self.base is not None and _ROOT_PATH.match(raw) and _ORIGIN.match(self.base):
            return self.base + raw[1:]  # what urljoin gives for these, at a fraction of its cost
        try:
            parts = urlsplit(raw)
        except ValueError:
            self.warn(line, f"dropped malformed {what} {short(raw)}")
            return None
        if parts.scheme:
            if parts.scheme.lower() in ("http", "https") and parts.hostname:
                return raw
            self.warn(line, f"dropped unsafe {what} {short(raw)}")
            return None
        if raw.startswith("//"):
            self.warn(line, f"dropped protocol-relative {what} {short(raw)}")
            return None
        if self.base is None:
            self.warn(line, f"dropped relative {what} {short(raw)}: no canonical URL or base_url to resolve it")
            return None
        return urljoin(self.base, raw)

    # -- inline Markdown ------------------------------------------------

    def rich_inline(self, source: str, line: int) -> Rich:
        source = source.strip()
        if not source:
            return EMPTY
        count = markup_count(source)  # several times faster than a regex search for the first one
        if not count:
            # No '&', '<' or '>' either: of escapeHtml's four replacements only the quote's is left.
            return rich(source.replace('"', "&quot;") if '"' in source else source, source.replace("\n", " "))
        if self._too_much_markup(count, line):
            return Rich(escapeHtml(source), source.replace("\n", " "))
        matches = _simple_link_matches(source)
        if matches is not None:
            return self._simple_links(source, line, matches)
        return self.markdown_inline(source, line)

    def _too_much_markup(self, count: int, line: int) -> bool:
        """Whether a field with ``count`` Markdown punctuation characters (:func:`markup_count`)
        is published as plain text: too many in it, or in the file so far."""
        if count > MAX_MARKUP:
            self.warn(line, f"{count} Markdown punctuation characters in one paragraph (more than {MAX_MARKUP}): published as plain text")
            return True
        if self.markup_spent + count > MAX_FILE_MARKUP:
            if self.markup_spent <= MAX_FILE_MARKUP:  # one warning, not one per paragraph
                self.warn(line, f"more than {MAX_FILE_MARKUP} Markdown punctuation characters in the file: published as plain text from here")
                self.markup_spent = MAX_FILE_MARKUP + 1
            return True
        self.markup_spent += count
        return False

    def markdown_inline(self, source: str, line: int) -> Rich:
        """The general path: markdown-it's inline parser, then link checks."""
        tokens = _md.parseInline(source)
        html_out, text, links = self._render_inline(tokens[0].children or [], line)
        return Rich(html_out, text, links)

    def _simple_links(self, source: str, line: int, matches: list[re.Match[str]]) -> Rich:
        """[text](url) links in otherwise plain text, rendered as markdown-it would.

        ``matches`` are from :func:`_simple_link_matches`: neither the labels nor
        the text around them hold '&', '<' or '>', so escaping them is
        escaping their quotes.
        """
        html_parts: list[str] = []
        text_parts: list[str] = []
        links: list[Link] = []
        pos = 0
        for m in matches:
            before = source[pos : m.start()]
            html_parts.append(before.replace('"', "&quot;"))
            text_parts.append(before)
            label, raw = m.group(1, 2)
            url = self.safe_url(raw, line, "link")
            if url is None:
                html_parts.append(label.replace('"', "&quot;"))
            else:
                href = url if _NORMAL_LINK.fullmatch(url) else _md.normalizeLink(url)
                html_parts.append('<a href="' + escapeHtml(href) + '">' + label.replace('"', "&quot;") + "</a>")
                links.append(Link(label.replace("\n", " ").strip(), href))
            text_parts.append(label)
            pos = m.end()
        html_parts.append(source[pos:].replace('"', "&quot;"))
        text_parts.append(source[pos:])
        return rich("".join(html_parts), "".join(text_parts).replace("\n", " ").strip(), tuple(links))

    def rich_paragraphs(self, paragraphs: Sequence[tuple[str, int]]) -> Rich:
        html_parts: list[str] = []
        text_parts: list[str] = []
        links: list[Link] = []
        for source, line in paragraphs:
            para = self.rich_inline(source, line)
            if not para:
                continue
            html_parts.append(f"<p>{para.html}</p>")
            text_parts.append(para.text)
            links.extend(para.links)
        return rich("\n".join(html_parts), "\n\n".join(text_parts), tuple(links))

    def rich_block(self, source: str, line: int) -> Rich:
        """Generic Markdown for unknown sections (lists, paragraphs...)."""
        if self._too_much_markup(markup_count(source), line):
            paragraphs = [p.strip() for p in re.split(r"\n\s*\n", source) if p.strip()]
            return Rich("\n".join(f"<p>{escapeHtml(p)}</p>" for p in paragraphs), "\n\n".join(paragraphs))
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


def _simple_link_matches(source: str) -> list[re.Match[str]] | None:
    """The [text](url) links of ``source`` when the text around them holds no
    other Markdown, else None: what ``_NOT_SIMPLE.search(_SIMPLE_LINK.sub("",
    source))`` told, without building that string or finding the links twice."""
    matches: list[re.Match[str]] = []
    pos = 0
    for m in _SIMPLE_LINK.finditer(source):
        if _NOT_SIMPLE.search(source, pos, m.start()) is not None:
            return None
        matches.append(m)
        pos = m.end()
    return matches if _NOT_SIMPLE.search(source, pos) is None else None


def short(text: str, limit: int = 60) -> str:
    text = text.replace("\n", " ")
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def plain(text: str) -> str:
    """Plain form of a one-line Markdown-ish field (title, outlet, dek)."""
    text = text.strip()
    if _PLAIN_CHARS.search(text) is None and "  " not in text:
        return text  # the common case (outlets, regions, languages): is_plain, inlined
    return _plain_markup(text)


def _plain_markup(text: str) -> str:
    # The count never exceeds the length: short fields (nearly all) skip it.
    if len(text) > MAX_MARKUP and markup_count(text) > MAX_MARKUP:
        return _WS.sub(" ", text)  # not a title but hostile text: kept as written (see MAX_MARKUP)
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


def strip_quotes(text: str) -> str:
    text = text.strip()
    # Each pair opens with its own character: the first one picks the only pair that can match.
    right = _QUOTE_PAIRS.get(text[:1])
    if right is not None and len(text) >= 2 and text.endswith(right):
        return text[1:-1].strip()
    return text


_QUOTE_PAIRS = {'"': '"', "“": "”", "«": "»", "„": "“", "「": "」", "'": "'", "‘": "’"}


# -- front matter ---------------------------------------------------------
