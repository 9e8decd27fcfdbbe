"""Story issues and digests: Brief → Jinja2 → MJML → HTML, plain text, MIME.

Pure: briefs and config in, values out; the only I/O is reading templates
(once per process). Three stages:

1. ``render_story`` / ``render_digest`` build a view model, render the MJML
   and text templates and compile the MJML with mjml-python, once per issue.
   The result (:class:`RenderedIssue`) still contains a *placeholder* where
   each reader's unsubscribe URL goes.
2. :class:`MessageTemplate` serialises the whole RFC 5322 message once,
   with placeholders for the per-recipient bits (To, Message-ID,
   List-Unsubscribe, the unsubscribe links in both bodies).
3. :meth:`MessageTemplate.personalize` joins precomputed byte chunks with
   the recipient's values: no MIME building per recipient.

Why the placeholder can never be forged by a brief: it embeds a digest of
everything that shaped the issue (brief bytes, config, templates), so a brief
would have to contain a hash of itself. Bodies are sent as 8bit UTF-8 with
every line kept under 998 octets, so no transfer encoding can split a
placeholder (quoted-printable would wrap it, base64 would hide it).
"""

from __future__ import annotations

import email.policy
import functools
import hashlib
import html as html_mod
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, Literal

import mjml
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, TemplateError
from markupsafe import Markup

from .briefs import is_http_url
from .config import Config
from .templating import search_path
from .errors import DeliveryError, RenderError
from .model import Brief, Rich, Take

log = logging.getLogger(__name__)

RENDERER_VERSION = "newsletter/1"

TEXT_WIDTH = 72
MAX_LINE_OCTETS = 998  # RFC 5322 hard limit, excluding CRLF
_FOLD_AT = 900  # fold HTML lines well before the hard limit
MAX_SUBJECT = 180
MAX_PREHEADER = 150
REGIONS_IN_LINE = 10
EXAMPLE_RECIPIENT = "reader@example.org"

Kind = Literal["story", "digest"]


@dataclass(frozen=True)
class RenderedIssue:
    kind: Kind
    key: str  # story slug, or digest period key
    subject: str  # sanitised: no CR/LF/control chars
    preheader: str
    mjml: str
    html: str  # contains the unsubscribe placeholder
    text: str  # contains the same placeholder
    content_hash: str  # sha256 of the inputs that shaped it


# ---------------------------------------------------------------- text hygiene

_PARA_BREAK = re.compile(r"\n[ \t]*\n")


def clean_line(value: str, limit: int | None = None) -> str:
    """One line of display text: control, format and line-separator characters
    become spaces (they could break a header or spoof direction), whitespace
    collapses, and an over-long value is cut with an ellipsis."""
    # isprintable() is False for exactly the Cc/Cf/Zl/Zp/Zs families, so the
    # per-character scan only runs on the rare strings that need it.
    if not value.isprintable():
        value = "".join(
            " " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Zs") else ch for ch in value
        )
    out = " ".join(value.split()) if "  " in value or value[:1] == " " or value[-1:] == " " else value
    if limit is not None and len(out) > limit:
        out = out[: limit - 1].rstrip() + "…"
    return out


def unsubscribe_placeholder(content_hash: str) -> str:
    """The token standing for the reader's unsubscribe URL in html and text.

    It is itself an absolute https URL (under the reserved ``.invalid`` TLD),
    so an unfilled issue still only links to http(s)."""
    return f"https://unsubscribe.invalid/{content_hash[:40]}"


def _boundary(content_hash: str) -> str:
    return f"=_pub_{content_hash[:32]}"


# ---------------------------------------------------------------- templates


@functools.lru_cache(maxsize=32)
def _line_pattern(width: int) -> re.Pattern[str]:
    # Up to ``width`` characters ending at a space, else one whole long word
    # (a URL keeps its own line): greedy filling done by the regex engine,
    # many times faster than textwrap for the dozens of paragraphs per issue.
    return re.compile(r"(?:.{1,%d}|\S+)(?: +|$)" % width)


def _wrap(value: str, width: int = TEXT_WIDTH, indent: str = "", subsequent: str | None = None) -> str:
    """Fill each paragraph of ``value`` to ``width`` columns.

    The indents used by the templates are the same length on every line
    ("* " then "  "), so one pattern serves the whole paragraph."""
    sub = indent if subsequent is None else subsequent
    pattern = _line_pattern(max(width - max(len(indent), len(sub)), 20))
    out = []
    first = True
    for para in _PARA_BREAK.split(str(value)):
        words = " ".join(para.split())
        if not words:
            continue
        if _WIDE.search(words):
            lines = _fill_wide(words, width, indent if first else sub, sub)
        else:
            pieces = pattern.findall(words)
            lines = [(indent if first else sub) + pieces[0].rstrip()]
            lines.extend(sub + piece.rstrip() for piece in pieces[1:])
        out.append("\n".join(lines))
        first = False
    return "\n\n".join(out)


# East Asian wide characters take two columns and may break anywhere.
_WIDE = re.compile(
    "[\u1100-\u115f\u2e80-\u303e\u3041-\u33ff\u3400-\u4dbf\u4e00-\u9fff\ua000-\ua4cf"
    "\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6\U00020000-\U0003fffd]"
)
_WIDE_TOKENS = re.compile(_WIDE.pattern + "|[^\\s" + _WIDE.pattern[1:] + "+|\\s+")


def _columns(text: str) -> int:
    """Display width in a monospace terminal or mail client."""
    return len(text) + len(_WIDE.findall(text))


def _fill_wide(text: str, width: int, indent: str, subsequent: str) -> list[str]:
    """Greedy fill by display columns, breaking between wide characters too."""
    lines: list[str] = []
    line, cols, empty, space = indent, _columns(indent), True, False
    for tok in _WIDE_TOKENS.findall(text):
        if tok.isspace():
            space = True
            continue
        sep = " " if space and not empty else ""
        tw = _columns(tok)
        if not empty and cols + len(sep) + tw > width:
            lines.append(line)
            line, cols = subsequent + tok, _columns(subsequent) + tw
        else:
            line, cols = line + sep + tok, cols + len(sep) + tw
        empty, space = False, False
    lines.append(line)
    return lines


def _underline(value: str, char: str) -> str:
    first = _wrap(value).splitlines()
    longest = max((_columns(line) for line in first), default=0)
    return char * min(max(longest, 3), TEXT_WIDTH)


class _Refs:
    """Numbered link references for the plain-text version ("[3]")."""

    def __init__(self) -> None:
        self._numbers: dict[str, int] = {}

    def ref(self, url: str | None) -> str:
        if not url:
            return ""
        n = self._numbers.setdefault(url, len(self._numbers) + 1)
        return f"[{n}]"

    def __iter__(self) -> Any:
        return iter((n, url) for url, n in self._numbers.items())

    def __bool__(self) -> bool:
        return bool(self._numbers)


def _rich_text(refs: _Refs) -> Callable[..., str]:
    def rich(value: Rich, indent: str = "", subsequent: str | None = None) -> str:
        body = _wrap(value.text, indent=indent, subsequent=subsequent)
        if value.links:
            sub = indent if subsequent is None else subsequent
            marks = ", ".join(f"{link.text} {refs.ref(link.url)}" for link in value.links)
            body += "\n" + _wrap(f"(Links: {marks})", indent=sub, subsequent=sub)
        return body

    return rich


def _template_dirs(cfg: Config) -> tuple[str, ...]:
    return search_path(cfg.paths.templates)


@functools.lru_cache(maxsize=8)
def _environment(dirs: tuple[str, ...]) -> tuple[Environment, str]:
    """A Jinja2 environment searching ``dirs`` in order, and a digest of the
    email templates it would use (part of every issue's content hash)."""
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(d) for d in dirs]),
        autoescape=lambda name: bool(name and name.endswith(".mjml.j2")),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        extensions=["jinja2.ext.do"],
        # Templates are read once per process, so the digest below stays true.
        auto_reload=False,
    )
    env.filters["wrap"] = _wrap
    env.filters["underline"] = _underline
    digest = hashlib.sha256()
    for name in sorted(n for n in env.list_templates() if n.startswith("email/")):
        source, _, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
        digest.update(name.encode() + b"\0" + source.encode() + b"\0")
    return env, digest.hexdigest()


def _render_template(env: Environment, name: str, context: dict[str, Any], what: str) -> str:
    try:
        return env.get_template(name).render(context)
    except TemplateError as exc:
        raise RenderError(what, f"template {name}: {exc}") from exc


# ---------------------------------------------------------------- HTML post-processing

_LEFTOVER_MJ = re.compile(r"<\s*/?\s*mj-[\w-]*", re.IGNORECASE)
# Tags after which a newline renders as nothing.
_BREAK_AFTER = tuple(f"</{t}>" for t in "td tr th div p table tbody thead li ul ol h1 h2 h3 caption colgroup".split()) + (
    "<tbody>",
    "<tr>",
    "<![endif]-->",
)
_BREAK_BYTES = tuple(t.encode() for t in _BREAK_AFTER)


def _fold_html(html: str) -> str:
    """Keep every line under the 8bit limit. Over-long lines (mjml-python
    writes the body as one) are cut after block-level tags, where a newline
    renders as nothing, as few times as needed; a paragraph still too long
    is cut at spaces between words."""
    out: list[str] = []
    for line in html.split("\n"):
        if len(line) <= _FOLD_AT // 4 or len(line.encode()) <= _FOLD_AT:
            out.append(line)
        else:
            out.extend(_fold_line(line))
    return "\n".join(out)


def _fold_line(line: str) -> list[str]:
    """Cut one over-long line into pieces of at most _FOLD_AT octets.

    Works on bytes (the limit is in octets; every cut point is ASCII, so no
    multi-byte character is split). In each window, cut after the last
    block-level tag; else after the last space between words; else (CJK
    prose, one huge word) inside the text through an empty comment, since a
    bare newline between CJK characters would render as a space."""
    data = line.encode()
    pieces: list[bytes] = []
    start = 0
    while len(data) - start > _FOLD_AT:
        end = start + _FOLD_AT
        # Walk back over the '>' in the window to the last block-level tag end.
        cut = -1
        i = data.rfind(b">", start, end)
        while i > start:
            if data.endswith(_BREAK_BYTES, start, i + 1):
                cut = i + 1
                break
            i = data.rfind(b">", start, i)
        if cut > start:
            pieces.append(data[start:cut])
            start = cut
            continue
        space, text_pos = _window_cut_points(data, start, end)
        if space > start:
            pieces.append(data[start:space])
            start = space
        elif text_pos > start:
            pieces.append(data[start:text_pos] + b"<!--")
            data = data[:text_pos] + b"-->" + data[text_pos:]
            start = text_pos
        else:
            break  # nothing safe to cut: the caller reports the long line
    pieces.append(data[start:])
    return [piece.decode() for piece in pieces]


_TAG_OR_TEXT_B = re.compile(rb"<[^>]*>?|[^<]+")


def _window_cut_points(data: bytes, start: int, end: int) -> tuple[int, int]:
    """(just after the last space in element text, a late safe position in
    element text) within data[start:end]; 0 where there is none. Text inside
    <title>/<style> and character references are never cut."""
    space = text_pos = 0
    previous_tag = b""
    for m in _TAG_OR_TEXT_B.finditer(data, start, end):
        chunk = m.group()
        if chunk.startswith(b"<"):
            previous_tag = chunk
            continue
        if previous_tag[:6].lower() in (b"<title", b"<style"):
            continue
        idx = chunk.rfind(b" ")
        if idx >= 0:
            space = m.start() + idx + 1
        # Skip the "-->" a previous comment cut left, so each cut moves on.
        lo = m.start() + (3 if chunk.startswith(b"-->") else 0) + 1
        pos = m.end() - 1
        while pos > lo and (0x80 <= data[pos] < 0xC0):
            pos -= 1  # not inside a UTF-8 sequence
        amp = data.rfind(b"&", m.start(), pos + 1)
        if amp >= 0 and b";" not in data[amp:pos]:
            pos = amp  # not inside "&amp;"
        if pos > lo:
            text_pos = pos
    return space, text_pos


def _compile_mjml(source: str, what: str) -> str:
    try:
        # fonts={}: no web-font <link>, an outside fetch that would track readers.
        out = mjml.mjml2html(source, disable_comments=True, fonts={})
    except Exception as exc:  # mjml-python raises bare Python errors from Rust
        raise RenderError(what, f"MJML did not compile: {exc}") from exc
    # mjml-python passes unknown tags through silently: a typo would ship.
    leftover = _LEFTOVER_MJ.search(out)
    if leftover:
        raise RenderError(what, f"MJML left {leftover.group()!r} in the HTML (unknown or misplaced tag)")
    out = _fold_html(out)
    longest = _longest_line(out)
    if longest > MAX_LINE_OCTETS:
        raise RenderError(what, f"HTML has an unbreakable {longest}-octet line (an over-long URL?)")
    # A MIME body ends in a newline; ending with one keeps web and mail copies identical.
    return out if out.endswith("\n") else out + "\n"


def _longest_line(text: str) -> int:
    """Octets in the longest line (only lines that could be long are encoded)."""
    return max((len(line.encode()) if len(line) > _FOLD_AT // 4 else len(line) for line in text.split("\n")), default=0)


def _check_text_lines(text: str, what: str) -> None:
    longest = _longest_line(text)
    if longest > MAX_LINE_OCTETS:
        raise RenderError(what, f"text has a {longest}-octet line (an over-long URL?)")


# ---------------------------------------------------------------- view models


def _link_style(html: str) -> Markup:
    # Rich HTML from the parser is already escaped with absolute http(s) links;
    # links get an inline colour because clients drop <style> unpredictably.
    return Markup(html.replace("<a href=", '<a style="color:#0b5cad" href='))


def story_url(brief: Brief, cfg: Config) -> str:
    """Where "the full story" lives: the canonical URL, else our web issue."""
    return brief.canonical or cfg.site.url(f"issues/{brief.slug}.html")


def region_line(brief: Brief, limit: int = REGIONS_IN_LINE) -> str:
    dist = brief.region_distribution()
    parts = [f"{clean_line(region)} {n}" for region, n in dist[:limit]]
    if len(dist) > limit:
        rest = sum(n for _, n in dist[limit:])
        parts.append(f"{len(dist) - limit} more regions {rest}")
    return " · ".join(parts)


@dataclass(frozen=True)
class _TakeView:
    outlet: str
    region: str
    language: str
    text: Markup
    text_rich: Rich
    quote: str | None
    source: str | None


@dataclass(frozen=True)
class _Group:
    name: str
    rows: tuple[_TakeView, ...]
    folded: tuple[_TakeView, ...]


@dataclass(frozen=True)
class _Coverage:
    region_line: str
    groups: tuple[_Group, ...]
    hidden: int
    more_url: str


def _take_view(take: Take) -> _TakeView:
    source = take.source if take.source and is_http_url(take.source) else None
    return _TakeView(
        outlet=clean_line(take.outlet) or "Unnamed outlet",
        region=clean_line(take.region),
        language=clean_line(take.language),
        text=_link_style(take.text.html),
        text_rich=take.text,
        quote=clean_line(take.quote) if take.quote else None,
        source=source,
    )


def _coverage(brief: Brief, cfg: Config, limit: int) -> _Coverage:
    """The first ``limit`` takes in brief order; the rest become "and N more"."""
    groups: list[_Group] = []
    shown = 0
    for lens in brief.lenses:
        take_here = lens.takes[: max(0, limit - shown)]
        shown += len(take_here)
        if not take_here:
            continue
        views = [_take_view(t) for t in take_here]
        groups.append(
            _Group(
                name=clean_line(lens.name) or "Other",
                rows=tuple(v for v, t in zip(views, take_here) if t.text),
                folded=tuple(v for v, t in zip(views, take_here) if not t.text),
            )
        )
    return _Coverage(region_line(brief), tuple(groups), brief.take_count - shown, story_url(brief, cfg))


def _common(cfg: Config, *, subject: str, preheader: str, browser_url: str, unsub: str, reason: str, date_label: str) -> dict[str, Any]:
    return {
        "lang": cfg.site.language or "en",
        "subject": subject,
        "preheader": preheader,
        "site_title": cfg.site.title,
        "logo": cfg.site.logo if is_http_url(cfg.site.logo) else "",
        "date_label": date_label,
        "browser_url": browser_url,
        "unsubscribe_url": unsub,
        "sender_name": cfg.email.sender_name,
        "postal_address": cfg.email.postal_address,
        "reason": reason,
    }


def _date_label(brief: Brief, cfg: Config) -> str:
    day = brief.published_at(cfg.site.tz).astimezone(cfg.site.tz).date()
    return f"{day:%-d %B %Y}"


def _inputs_hash(kind: str, key: str, parts: Iterable[str], cfg: Config, template_digest: str) -> str:
    h = hashlib.sha256()
    for item in (RENDERER_VERSION, kind, key, template_digest, repr(cfg.site), repr(cfg.email), *parts):
        h.update(item.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()


def _size(html: str) -> int:
    return len(html.encode("utf-8"))


# ---------------------------------------------------------------- story


def render_story(brief: Brief, cfg: Config) -> RenderedIssue:
    """A story issue for one brief; coverage is cut to fit the HTML budget."""
    what = f"story {brief.slug}"
    env, tdigest = _environment(_template_dirs(cfg))
    content_hash = _inputs_hash("story", brief.slug, [brief.content_hash], cfg, tdigest)
    unsub = unsubscribe_placeholder(content_hash)
    subject = clean_line(brief.title, MAX_SUBJECT) or brief.slug
    preheader = clean_line(brief.dek or brief.summary.text, MAX_PREHEADER)
    browser_url = cfg.site.url(f"issues/{brief.slug}.html")
    reason = (
        f"You get this email because you subscribed to story alerts from {cfg.site.title} "
        f"at {cfg.site.base_url}."
    )
    base = _common(
        cfg, subject=subject, preheader=preheader, browser_url=browser_url, unsub=unsub,
        reason=reason, date_label=_date_label(brief, cfg),
    )
    base.update(
        title=clean_line(brief.title),
        dek=clean_line(brief.dek) if brief.dek else "",
        counts_line=brief.counts_line(),
        summary=_link_style(brief.summary.html) if brief.summary else "",
        why=_link_style(brief.why_it_matters.html) if brief.why_it_matters else "",
        watch=[_link_style(item.html) for item in brief.what_to_watch],
        sections=[{"title": clean_line(s.title), "body": _link_style(s.body.html)} for s in brief.sections],
        related=[{"label": slug, "url": cfg.site.url(f"issues/{slug}.html")} for slug in brief.related],
        entities=[clean_line(e) for e in brief.entities if clean_line(e)],
    )
    text_base = dict(base, summary=brief.summary if brief.summary else "",
                     why=brief.why_it_matters if brief.why_it_matters else "",
                     watch=list(brief.what_to_watch),
                     sections=[{"title": clean_line(s.title), "body": s.body} for s in brief.sections])

    limit = min(cfg.email.max_takes, brief.take_count)
    budget = cfg.email.max_html_bytes
    while True:
        coverage = _coverage(brief, cfg, limit)
        source = _render_template(env, "email/story.mjml.j2", dict(base, coverage=coverage), what)
        html = _compile_mjml(source, what)
        size = _size(html)
        if size <= budget:
            break
        if limit == 0:
            raise RenderError(what, f"HTML is {size} bytes without any takes; budget is {budget}")
        # Shrink in proportion to the overshoot, always by at least one take.
        limit = min(limit - 1, int(limit * budget / size * 0.95))
        limit = max(limit, 0)
        log.debug("%s: %d bytes over budget, retrying with %d takes", what, size - budget, limit)

    refs = _Refs()
    text = _render_text(env, "email/story.txt.j2", dict(text_base, coverage=coverage), refs, what)
    if coverage.hidden:
        log.info("%s: coverage cut to %d of %d takes", what, brief.take_count - coverage.hidden, brief.take_count)
    return RenderedIssue("story", brief.slug, subject, preheader, source, html, text, content_hash)


def _render_text(env: Environment, name: str, context: dict[str, Any], refs: _Refs, what: str) -> str:
    # Link numbering belongs to this one render, so the helpers are bound here.
    ctx = dict(context, ref=refs.ref, refs=refs, rich=_rich_text(refs))
    text = _render_template(env, name, ctx, what)
    text = re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"
    _check_text_lines(text, what)
    return text


# ---------------------------------------------------------------- digest


def coverage_line(brief: Brief, regions: int = 3) -> str:
    """``17 takes · 6 lenses · 8 regions — United States 7 · India 2 · …``; '' without takes."""
    if not brief.take_count:
        return ""
    dist = brief.region_distribution()
    line = brief.counts_line()
    if dist:
        line += " — " + " · ".join(f"{clean_line(r)} {n}" for r, n in dist[:regions])
    return line


def render_digest(briefs: Sequence[Brief], cfg: Config, *, period_key: str, period_label: str) -> RenderedIssue:
    """A digest of several stories; drafts are left out."""
    what = f"digest {period_key}"
    stories_in = [b for b in briefs if not b.is_draft]
    if not stories_in:
        raise RenderError(what, "no published stories to send")
    env, tdigest = _environment(_template_dirs(cfg))
    content_hash = _inputs_hash(
        "digest", period_key, [period_label, *(f"{b.slug}:{b.content_hash}" for b in stories_in)], cfg, tdigest
    )
    unsub = unsubscribe_placeholder(content_hash)
    label = clean_line(period_label, 80)
    first = clean_line(stories_in[0].title)
    subject = clean_line(
        f"{cfg.site.title} {label}: {first}"
        + (f" and {len(stories_in) - 1} more" if len(stories_in) > 1 else ""),
        MAX_SUBJECT,
    )
    preheader = clean_line(" · ".join(clean_line(b.title) for b in stories_in), MAX_PREHEADER)
    reason = (
        f"You get this email because you subscribed to the {cfg.site.title} digest "
        f"at {cfg.site.base_url}."
    )
    base = _common(
        cfg, subject=subject, preheader=preheader,
        browser_url=cfg.site.url(f"issues/digest-{period_key}.html"), unsub=unsub, reason=reason,
        date_label=label,
    )
    views = [
        {
            "title": clean_line(b.title),
            "dek": clean_line(b.dek) if b.dek else "",
            "url": story_url(b, cfg),
            "summary_html": _link_style(b.summary.html),
            "summary_rich": b.summary,
            "coverage_line": coverage_line(b),
        }
        for b in stories_in
    ]
    heading = f"{cfg.site.title}: {label}" if label else cfg.site.title
    base.update(heading=heading, contents=views)

    full = len(views)
    budget = cfg.email.max_html_bytes
    while True:
        shown = [dict(v, summary=v["summary_html"]) for v in views[:full]]
        source = _render_template(env, "email/digest.mjml.j2", dict(base, stories=shown, hidden=len(views) - full), what)
        html = _compile_mjml(source, what)
        size = _size(html)
        if size <= budget:
            break
        if full == 0:
            raise RenderError(what, f"HTML is {size} bytes with only the contents list; budget is {budget}")
        full = max(0, min(full - 1, int(full * budget / size * 0.95)))
    refs = _Refs()
    text_stories = [dict(v, summary=v["summary_rich"]) for v in views[:full]]
    text = _render_text(env, "email/digest.txt.j2", dict(base, stories=text_stories, hidden=len(views) - full), refs, what)
    return RenderedIssue("digest", period_key, subject, preheader, source, html, text, content_hash)


# ---------------------------------------------------------------- web version


def public_unsubscribe_url(cfg: Config) -> str:
    """Unsubscribe link on the public web copy: the form, not a personal token."""
    return cfg.site.url("unsubscribe")


def web_version(issue: RenderedIssue, cfg: Config) -> tuple[str, str]:
    """(html, text) for ``public/issues/``: placeholders filled for everyone."""
    token = unsubscribe_placeholder(issue.content_hash)
    url = public_unsubscribe_url(cfg)
    return issue.html.replace(token, html_mod.escape(url)), issue.text.replace(token, url)


# ---------------------------------------------------------------- MIME

_CRLF = b"\r\n"
_SMTP_POLICY = email.policy.SMTP.clone(max_line_length=78)
_ADDR = re.compile(r"^[^\s@<>()\[\],;:\"\\]+@[A-Za-z0-9.-]+$")
_MSGID = re.compile(r"^<[^\s<>@]+@[^\s<>@]+>$")
_BAD_URL_CHARS = re.compile(r"[\s<>\"'\\^`{|}]")


def _header_bytes(name: str, value: str) -> bytes:
    """One header, folded and RFC 2047-encoded as the email package does it."""
    msg = EmailMessage(policy=_SMTP_POLICY)
    msg[name] = value
    return msg.as_bytes(policy=_SMTP_POLICY).split(_CRLF + _CRLF, 1)[0]


@dataclass(frozen=True)
class MessageTemplate:
    """A pre-serialised message; ``personalize`` only joins bytes.

    ``_chunks`` and ``_slots`` interleave: chunk0 slot0 chunk1 slot1 ... chunkN.
    """

    issue_kind: str
    issue_key: str
    _chunks: tuple[bytes, ...]
    _slots: tuple[str, ...]
    _subject: bytes
    _test_subject: bytes
    _mailto: str

    @classmethod
    def build(cls, issue: RenderedIssue, cfg: Config, *, sent_at: datetime) -> MessageTemplate:
        if sent_at.tzinfo is None:
            raise RenderError(f"{issue.kind} {issue.key}", "sent_at must be timezone-aware")
        token = unsubscribe_placeholder(issue.content_hash).encode("ascii")
        msg = EmailMessage(policy=_SMTP_POLICY)
        msg["From"] = Address(cfg.email.sender_name, addr_spec=cfg.email.sender_address)
        if cfg.email.reply_to:
            msg["Reply-To"] = Address(addr_spec=cfg.email.reply_to)
        msg["Date"] = format_datetime(sent_at)
        msg["List-Id"] = f"{clean_line(cfg.site.title)} <{cfg.email.list_id}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg["X-Publisher-Issue"] = f"{issue.kind}/{issue.key}"
        msg.set_content(issue.text, subtype="plain", charset="utf-8", cte="8bit")
        msg.add_alternative(issue.html, subtype="html", charset="utf-8", cte="8bit")
        msg.set_boundary(_boundary(issue.content_hash))
        raw = msg.as_bytes(policy=_SMTP_POLICY)
        head, body = raw.split(_CRLF + _CRLF, 1)
        # Bodies: the text part comes first, so placeholders before the HTML
        # part's headers are in text, the rest in HTML (which needs escaping).
        html_start = body.index(b"Content-Type: text/html")
        # Per-recipient headers go first, as whole lines we write ourselves,
        # so header folding can never split a value.
        chunks: list[bytes] = [b"", _CRLF + b"To: ", _CRLF + b"Message-ID: ", _CRLF + b"List-Unsubscribe: "]
        slots: list[str] = ["subject", "to", "message_id", "list_unsubscribe"]
        pending = _CRLF + head + _CRLF + _CRLF
        pos = 0
        while True:
            idx = body.find(token, pos)
            if idx < 0:
                break
            chunks.append(pending + body[pos:idx])
            slots.append("unsub_text" if idx < html_start else "unsub_html")
            pending = b""
            pos = idx + len(token)
        chunks.append(pending + body[pos:])
        mailto = f"mailto:{cfg.email.unsubscribe_mailto}?subject=unsubscribe" if cfg.email.unsubscribe_mailto else ""
        return cls(
            issue.kind, issue.key, tuple(chunks), tuple(slots),
            _header_bytes("Subject", issue.subject),
            _header_bytes("Subject", clean_line("[TEST] " + issue.subject, MAX_SUBJECT + 7)),
            mailto,
        )

    def personalize(self, *, to: str, unsubscribe_url: str, message_id: str, test: bool = False) -> bytes:
        """The message for one recipient; raises a permanent DeliveryError for
        values that could inject headers or break the message."""
        if not to.isascii() or not _ADDR.match(to):
            raise DeliveryError(f"refusing recipient address {to!r}", permanent=True)
        if not _MSGID.match(message_id) or not message_id.isascii():
            raise DeliveryError(f"refusing Message-ID {message_id!r}", permanent=True)
        if not unsubscribe_url.isascii() or not is_http_url(unsubscribe_url) or _BAD_URL_CHARS.search(unsubscribe_url):
            raise DeliveryError(f"refusing unsubscribe URL {unsubscribe_url!r}", permanent=True)
        url = unsubscribe_url.encode("ascii")
        list_unsub = b"<" + url + b">"
        if self._mailto:
            list_unsub += b", <" + self._mailto.encode("ascii") + b">"
        values = {
            "subject": self._test_subject if test else self._subject,
            "to": to.encode("ascii"),
            "message_id": message_id.encode("ascii"),
            "list_unsubscribe": list_unsub,
            "unsub_text": url,
            "unsub_html": url.replace(b"&", b"&amp;"),
        }
        parts: list[bytes] = []
        for chunk, slot in zip(self._chunks, self._slots):
            parts.append(chunk)
            parts.append(values[slot])
        parts.append(self._chunks[-1])
        return b"".join(parts)


def example_message(issue: RenderedIssue, cfg: Config, *, sent_at: datetime) -> bytes:
    """The message as a fixed example reader would get it (``render --as eml``)."""
    template = MessageTemplate.build(issue, cfg, sent_at=sent_at)
    domain = cfg.email.sender_address.rpartition("@")[2] or "example.org"
    return template.personalize(
        to=EXAMPLE_RECIPIENT,
        unsubscribe_url=cfg.site.url("unsubscribe?t=EXAMPLE"),
        message_id=f"<{issue.kind}.{issue.key}.example@{domain}>",
    )


__all__ = [
    "RenderedIssue",
    "MessageTemplate",
    "render_story",
    "render_digest",
    "web_version",
    "example_message",
    "unsubscribe_placeholder",
    "story_url",
    "clean_line",
]
