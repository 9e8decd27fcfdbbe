"""Story issues and digests: Brief → Jinja2 → MJML → HTML and plain text.

Pure: briefs and config in, values out; the only I/O is reading templates
(once per process). ``render_story`` / ``render_digest`` build a view model,
render the MJML and text templates and compile the MJML once per issue. The
result (:class:`RenderedIssue`) still contains a *placeholder* where each
reader's unsubscribe URL goes; :mod:`publisher.mail.message` turns it into
a MIME message once per issue and fills the placeholder per recipient.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import html as html_mod
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, TemplateError
from markupsafe import Markup

from ..briefs.model import Brief, Rich, Take
from ..core.config import Config
from ..core.errors import RenderError
from ..core.urls import is_http_url
from .mjml import check_text_lines, compile_mjml
from .templating import search_path
from .text import Refs, clean_line, rich_text, underline, wrap

log = logging.getLogger(__name__)

RENDERER_VERSION = "newsletter/1"

MAX_SUBJECT = 180
MAX_PREHEADER = 150
REGIONS_IN_LINE = 10

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




def unsubscribe_placeholder(content_hash: str) -> str:
    """The token standing for the reader's unsubscribe URL in html and text.

    It is itself an absolute https URL (under the reserved ``.invalid`` TLD),
    so an unfilled issue still only links to http(s)."""
    return f"https://unsubscribe.invalid/{content_hash[:40]}"


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
    env.filters["wrap"] = wrap
    env.filters["underline"] = underline
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


def render_hash(brief: Brief, cfg: Config) -> str:
    """The content hash :func:`render_story` would give ``brief`` now (templates and settings included)."""
    _env, tdigest = _environment(_template_dirs(cfg))
    return _inputs_hash("story", brief.slug, [brief.content_hash], cfg, tdigest)


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
        html = compile_mjml(source, what)
        size = _size(html)
        if size <= budget:
            break
        if limit == 0:
            raise RenderError(what, f"HTML is {size} bytes without any takes; budget is {budget}")
        # Shrink in proportion to the overshoot, always by at least one take.
        limit = min(limit - 1, int(limit * budget / size * 0.95))
        limit = max(limit, 0)
        log.debug("%s: %d bytes over budget, retrying with %d takes", what, size - budget, limit)

    refs = Refs()
    text = _render_text(env, "email/story.txt.j2", dict(text_base, coverage=coverage), refs, what)
    if coverage.hidden:
        log.info("%s: coverage cut to %d of %d takes", what, brief.take_count - coverage.hidden, brief.take_count)
    return RenderedIssue("story", brief.slug, subject, preheader, source, html, text, content_hash)


def _render_text(env: Environment, name: str, context: dict[str, Any], refs: Refs, what: str) -> str:
    # Link numbering belongs to this one render, so the helpers are bound here.
    ctx = dict(context, ref=refs.ref, refs=refs, rich=rich_text(refs))
    text = _render_template(env, name, ctx, what)
    text = re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"
    check_text_lines(text, what)
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
        html = compile_mjml(source, what)
        size = _size(html)
        if size <= budget:
            break
        if full == 0:
            raise RenderError(what, f"HTML is {size} bytes with only the contents list; budget is {budget}")
        full = max(0, min(full - 1, int(full * budget / size * 0.95)))
    refs = Refs()
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




# ---------------------------------------------------------------- check


def budget_problem(brief: Brief, cfg: Config) -> str | None:
    """Why ``brief``'s story email can never fit ``email.max_html_bytes`` (even with every take cut), or None.

    Takes are cut to fit, so only the rest of the brief can overflow. A
    brief whose other text is far under budget is passed without a render,
    which keeps ``publisher check`` over a large folder fast.
    """
    budget = cfg.email.max_html_bytes
    rest = [brief.summary.html, brief.why_it_matters.html if brief.why_it_matters else "", brief.title, brief.dek or ""]
    rest += [item.html for item in brief.what_to_watch] + [s.body.html for s in brief.sections] + list(brief.entities)
    # Each related story becomes a link to its web issue (~100 bytes of URL and markup besides the slug).
    estimate = sum(len(part) for part in rest) + sum(len(slug) + 100 for slug in brief.related)
    # The template adds well under half the budget and MJML well under doubling the text: render only near the limit.
    if estimate * 2 < budget // 2:
        return None
    try:
        # No lenses: the smallest email this brief can make.
        render_story(dataclasses.replace(brief, lenses=(), content_hash=brief.content_hash + ":no-takes"), cfg)
    except RenderError as exc:
        return f"its email cannot fit the size budget even with no takes ({exc}); shorten the summary or sections, or raise email.max_html_bytes"
    return None
