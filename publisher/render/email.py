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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, TemplateError
from markupsafe import Markup

from ..briefs.model import Brief
from ..core.config import Config
from ..core.errors import RenderError
from ..core.memo import IdentityMemo
from ..core.urls import is_http_url
from .mjml import check_text_lines, compile_mjml, compile_raw, finish_html_sized, html_octets
from .skeleton import Marked, SkeletonCache, Unfit, fill, folded_octets
from . import story_mjml, story_text
from .templating import mirrored, search_path
from . import coverage as cov
from .coverage import TakeView
from .text import Refs, clean_line, rich_text, underline, wrap

log = logging.getLogger(__name__)

RENDERER_VERSION = "newsletter/1"

MAX_SUBJECT = 180
MAX_PREHEADER = 150
MAX_DIGEST_SUBJECT = 70

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


# One compiled MJML skeleton per document shape (see render.skeleton).
SKELETONS = SkeletonCache()


def _compile(dirs: tuple[str, ...], tdigest: str, name: str, context: dict[str, Any], what: str,
             *, sized: bool = False) -> tuple[str, str, int]:
    """(MJML source, HTML, its UTF-8 octets) for template ``name``: the shape's compiled skeleton filled when
    it can, else mjml-python. ``sized``: the octets alone (source and HTML ''), for a caller that needs only those."""
    env, _ = _environment(dirs)
    if name == "email/story.mjml.j2" and mirrored(dirs, story_mjml.TEMPLATES, story_mjml.SOURCES_SHA256):
        # The writer marks its bodies, so the skeleton does not scan for them.
        pieces = story_mjml.story_pieces(context)
        source = "".join(pieces.parts)
        marked: Marked | None = (pieces.parts, pieces.slots)
    else:
        source = _render_template(env, name, context, what)
        marked = None
    try:
        skeleton, bodies = SKELETONS.lookup((dirs, tdigest), source, what, marked)
    except Unfit as exc:
        log.debug("%s: compiled directly (%s)", what, exc)
        html = compile_raw(source, what)
    else:
        if sized and (size := folded_octets(skeleton, bodies)) is not None:
            return "", "", size  # counted, not made: see skeleton.folded_octets
        html = fill(skeleton, bodies)
    if sized:
        return "", "", html_octets(html, what)
    return source, *finish_html_sized(html, what)


# ---------------------------------------------------------------- view models


def _link_style(html: str) -> Markup:
    # Rich HTML from the parser is already escaped with absolute http(s) links;
    # links get an inline colour because clients drop <style> unpredictably.
    return Markup(html.replace("<a href=", '<a style="color:#0b5cad" href='))


def story_url(brief: Brief, cfg: Config) -> str:
    """Where "the full story" lives: the canonical URL, else our web issue."""
    return brief.canonical or cfg.site.url(f"issues/{brief.slug}.html")


@dataclass(frozen=True)
class _Coverage:
    """The compact coverage block: distribution, curated takes, the rest folded."""

    total: int
    counts_line: str
    regions: tuple[tuple[str, int], ...]
    lenses: tuple[tuple[str, int], ...]
    takes: tuple[TakeView, ...]
    also: tuple[TakeView, ...]  # outlet-only takes, named in one line
    also_more: int  # outlet-only takes not named
    lenses_more: int  # lenses beyond the chips shown (all are on the web page)
    more_url: str

    @property
    def shown(self) -> int:
        return len(self.takes)


ALSO_NAMED = 8
LENS_CHIPS = 10  # the biggest lenses; 30 chips would outweigh the takes themselves


def _coverage(brief: Brief, cfg: Config, k: int, view: cov.BriefCoverage | None = None) -> _Coverage:
    """``k`` takes picked across lenses and regions; every region and lens counted."""
    view = view or cov.of(brief)
    also, lenses = view.also, view.lenses
    return _Coverage(
        total=brief.take_count,
        counts_line=view.counts_line,
        regions=view.regions,
        lenses=lenses[:LENS_CHIPS],
        lenses_more=max(0, len(lenses) - LENS_CHIPS),
        takes=view.pick(k),
        also=also[:ALSO_NAMED],
        also_more=max(0, len(also) - ALSO_NAMED),
        more_url=cfg.site.url(f"issues/{brief.slug}.html"),
    )


def text_direction(cfg: Config) -> str:
    return cov.direction(cfg.site.language or "en")


def _common(cfg: Config, *, subject: str, preheader: str, browser_url: str, unsub: str, reason: str, date_label: str) -> dict[str, Any]:
    direction = text_direction(cfg)
    return {
        "lang": cfg.site.language or "en",
        "dir": direction,
        "align": "right" if direction == "rtl" else "left",
        # Outlook ignores list padding and logical properties: the indent is a margin on the start side.
        "list_margin": "0 22px 0 0" if direction == "rtl" else "0 0 0 22px",
        "subject": subject,
        "preheader": preheader,
        "site_title": cfg.site.title,
        "logo": cfg.site.logo if is_http_url(cfg.site.logo) else "",
        "date_label": date_label,
        "browser_url": browser_url,
        "unsubscribe_url": unsub,
        "sender_name": cfg.email.sender_name,
        "postal_address": cfg.email.postal_address,
        # "Briefs Desk · Briefs Desk, 1 Example Street": the name once.
        "postal_line": (
            cfg.email.postal_address
            if cfg.email.postal_address.startswith(cfg.email.sender_name)
            else f"{cfg.email.sender_name} · {cfg.email.postal_address}"
        ),
        "manage_url": cfg.site.url("manage/"),
        "home_url": cfg.site.url(""),
        "reason": reason,
    }


def _date_label(brief: Brief, cfg: Config) -> str:
    day = brief.published_at(cfg.site.tz).astimezone(cfg.site.tz).date()
    return f"{day:%-d %B %Y}"


_SETTINGS: IdentityMemo[str] = IdentityMemo(8)


def _settings_repr(cfg: Config) -> str:
    # repr() of the settings dataclasses costs more than the rest of the hash.
    hit = _SETTINGS.get((cfg,))
    if hit is None:
        hit = repr(cfg.site) + "\0" + repr(cfg.email)
        _SETTINGS.put((cfg,), (), hit)
    return hit


def _inputs_hash(kind: str, key: str, parts: Iterable[str], cfg: Config, template_digest: str) -> str:
    # One update of the items each followed by NUL: the bytes an update per item gave.
    items = "\0".join((RENDERER_VERSION, kind, key, template_digest, _settings_repr(cfg), *parts))
    return hashlib.sha256((items + "\0").encode("utf-8", "surrogatepass")).hexdigest()


# ---------------------------------------------------------------- story


def related_links(brief: Brief, cfg: Config, titles: Mapping[str, str]) -> list[dict[str, str]]:
    """Related stories whose titles are known; an unknown slug is left out, never shown raw."""
    return [
        {"label": clean_line(titles[slug]), "url": cfg.site.url(f"issues/{slug}.html")}
        for slug in brief.related
        if clean_line(titles.get(slug, ""))
    ]


def _story_hash(brief: Brief, cfg: Config, related: list[dict[str, str]], template_digest: str) -> str:
    parts = [brief.content_hash, repr(sorted((r["label"], r["url"]) for r in related))]
    return _inputs_hash("story", brief.slug, parts, cfg, template_digest)


def render_hash(brief: Brief, cfg: Config, related_titles: Mapping[str, str] | None = None) -> str:
    """The content hash :func:`render_story` would give ``brief`` now (templates and settings included)."""
    _env, tdigest = _environment(_template_dirs(cfg))
    return _story_hash(brief, cfg, related_links(brief, cfg, dict(related_titles or {})), tdigest)


def render_story(brief: Brief, cfg: Config, *, related_titles: Mapping[str, str] | None = None) -> RenderedIssue:
    """A story issue for one brief; the curated takes shrink to fit the HTML budget.

    ``related_titles`` maps related slugs to their titles (the pipeline knows
    them from the store); related stories without a known title are left out.
    """
    return _story(brief, cfg, related_titles, sized=False)


def story_web_text(brief: Brief, cfg: Config, *, related_titles: Mapping[str, str] | None = None) -> str:
    """``web_text(render_story(…), cfg)`` for a caller that writes only the web copy's text (a
    build): the email HTML that decides how many takes it lists is measured, not kept."""
    return web_text(_story(brief, cfg, related_titles, sized=True), cfg)


def _story(brief: Brief, cfg: Config, related_titles: Mapping[str, str] | None, *, sized: bool,
           contexts: list[tuple[str, dict[str, Any]]] | None = None) -> RenderedIssue:
    """:func:`render_story`; ``sized``: its MJML and HTML left '' (the HTML measured only);
    ``contexts`` gets each context rendered: ("mjml", …) per number of takes tried, then ("text", …)."""
    what = f"story {brief.slug}"
    view = cov.of(brief)
    titles = dict(related_titles or {})
    dirs = _template_dirs(cfg)
    env, tdigest = _environment(dirs)
    related = related_links(brief, cfg, titles)
    content_hash = _story_hash(brief, cfg, related, tdigest)
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
    section_titles = [clean_line(s.title) for s in brief.sections]
    base.update(
        title=clean_line(brief.title),
        dek=clean_line(brief.dek) if brief.dek else "",
        counts_line=view.counts_line,
        summary=_link_style(brief.summary.html) if brief.summary else "",
        why=_link_style(brief.why_it_matters.html) if brief.why_it_matters else "",
        watch=[_link_style(item.html) for item in brief.what_to_watch],
        sections=[{"title": t, "body": _link_style(s.body.html)} for t, s in zip(section_titles, brief.sections)],
        related=related,
        entities=[name for name in map(clean_line, brief.entities) if name],
        story_url=story_url(brief, cfg),
    )
    text_base = dict(base, summary=brief.summary if brief.summary else "",
                     why=brief.why_it_matters if brief.why_it_matters else "",
                     watch=list(brief.what_to_watch),
                     sections=[{"title": t, "body": s.body} for t, s in zip(section_titles, brief.sections)])

    k = min(cfg.email.coverage_takes, cfg.email.max_takes, brief.take_count)
    budget = cfg.email.max_html_bytes
    while True:
        coverage = _coverage(brief, cfg, k, view)
        context = dict(base, coverage=coverage)
        if contexts is not None:
            contexts.append(("mjml", context))
        source, html, size = _compile(dirs, tdigest, "email/story.mjml.j2", context, what, sized=sized)
        if size <= budget:
            break
        if k == 0:
            raise RenderError(what, f"HTML is {size} bytes without any takes; budget is {budget}")
        k -= 1
        log.debug("%s: %d bytes over budget, retrying with %d takes", what, size - budget, k)

    refs = Refs()
    text_ctx = dict(text_base, coverage=coverage)
    if contexts is not None:
        contexts.append(("text", text_ctx))
    if _typed_text(dirs):
        text = _finish_text(story_text.story_text(text_ctx, refs), what)
    else:
        text = _render_text(env, "email/story.txt.j2", text_ctx, refs, what)
    return RenderedIssue("story", brief.slug, subject, preheader, source, html, text, content_hash)


def _render_text(env: Environment, name: str, context: dict[str, Any], refs: Refs, what: str) -> str:
    # Link numbering belongs to this one render, so the helpers are bound here.
    ctx = dict(context, ref=refs.ref, refs=refs, rich=rich_text(refs))
    return _finish_text(_render_template(env, name, ctx, what), what)


# Written with a literal prefix: the regex engine then jumps between "\n\n\n"
# runs instead of trying every position (\n{3,} cost 0.1 ms per issue).
_BLANK_RUN = re.compile(r"\n\n\n+")


def _finish_text(text: str, what: str) -> str:
    text = _BLANK_RUN.sub("\n\n", text).strip("\n") + "\n"
    check_text_lines(text, what)
    return text


def _typed_text(dirs: tuple[str, ...]) -> bool:
    """Whether the story's text templates are the ones render.story_text mirrors."""
    return mirrored(dirs, story_text.TEMPLATES, story_text.SOURCES_SHA256)


# ---------------------------------------------------------------- digest


def coverage_line(brief: Brief, regions: int = 3) -> str:
    """``17 takes · 6 lenses · 8 regions — United States 7 · India 2 · …``; '' without takes."""
    line = cov.counts_line(brief)
    if not line:
        return ""
    dist = cov.region_counts(brief)
    if dist:
        line += " — " + " · ".join(f"{r}\u00a0{n}" for r, n in dist[:regions])
    return line


def digest_subject(titles: Sequence[str], limit: int = MAX_DIGEST_SUBJECT) -> str:
    """``Lead headline + 3 more``, within ``limit`` characters (the headline is cut, never the count)."""
    more = f" + {len(titles) - 1} more" if len(titles) > 1 else ""
    lead = clean_line(titles[0])
    room = limit - len(more)
    if len(lead) > room:
        lead = lead[: room - 1].rstrip(" ,;:·-") + "…"
    return lead + more


def digest_takes(brief: Brief) -> list[TakeView]:
    """One or two takes for a digest story, from different lenses when there are two."""
    return cov.pick(brief, 2)


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
    subject = digest_subject([b.title for b in stories_in])
    # The lead headline is the subject; the preheader names the others.
    preheader = clean_line(" · ".join(clean_line(b.title) for b in stories_in[1:]) or (stories_in[0].dek or ""), MAX_PREHEADER)
    reason = (
        f"You get this email because you subscribed to the {cfg.site.title} digest "
        f"at {cfg.site.base_url}."
    )
    base = _common(
        cfg, subject=subject, preheader=preheader,
        browser_url=cfg.site.url(f"issues/digest-{period_key}.html"), unsub=unsub, reason=reason,
        date_label="",
    )
    views = [
        {
            "title": clean_line(b.title),
            "dek": clean_line(b.dek) if b.dek else "",
            "url": story_url(b, cfg),
            "summary_html": _link_style(b.summary.html),
            "summary_rich": b.summary,
            "coverage_line": coverage_line(b),
            "takes": digest_takes(b),
        }
        for b in stories_in
    ]
    base.update(heading=label or cfg.site.title, contents=views)

    full = len(views)
    budget = cfg.email.max_html_bytes
    while True:
        shown = [dict(v, summary=v["summary_html"]) for v in views[:full]]
        source = _render_template(env, "email/digest.mjml.j2", dict(base, stories=shown, hidden=len(views) - full), what)
        html = compile_mjml(source, what)
        size = len(html.encode("utf-8"))
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
    return issue.html.replace(token, html_mod.escape(public_unsubscribe_url(cfg))), web_text(issue, cfg)


def web_text(issue: RenderedIssue, cfg: Config) -> str:
    """:func:`web_version`'s text alone (the site's pages are not the email's HTML: no need to fill that)."""
    return issue.text.replace(unsubscribe_placeholder(issue.content_hash), public_unsubscribe_url(cfg))


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
