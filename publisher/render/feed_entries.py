"""One story as a feed entry: its id, link, dates, categories and full HTML.

Feed readers key their "unread" state on the entry id and ``updated``, so
both come from the story itself, never from the build (see
:mod:`publisher.render.feeds`). Computed once per story for every feed it
appears in; the entry HTML is memoised by the identity of the Brief.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from jinja2 import Template, TemplateError

from ..briefs.model import Brief
from ..briefs.slugs import tag_slug
from ..core.config import Config
from ..core.errors import RenderError
from ..core.memo import IdentityMemo
from .coverage import LensGroup, TakeView, capped, groups, lens_label
from .escape import e as _e
from .templating import html_environment, mirrored, search_path

ENTRY_TEMPLATE = "feed/entry.html.j2"
GENERATOR = "publisher"


@dataclass(frozen=True)
class FeedStory:
    brief: Brief
    published: dt.datetime  # aware
    updated: dt.datetime  # aware; changes only when the story's content changes


# ------------------------------------------------------------------ sanitising

# Characters XML 1.0 forbids (C0 controls except TAB/LF/CR, surrogates,
# U+FFFE/U+FFFF), plus DEL and the C1 controls it discourages and feed
# validators reject. The parser strips them from bodies, but front matter
# and config values can still carry them; lxml would refuse most outright.
# U+FFFD (a decoding accident upstream) is a validator warning too.
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffd\ufffe\uffff]")


def clean(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot carry."""
    return _XML_FORBIDDEN.sub("", text)


def line(text: str) -> str:
    """A one-line plain-text value (titles, names): clean, whitespace folded."""
    return " ".join(clean(text).split())


# ------------------------------------------------------------------ entry HTML


@functools.lru_cache(maxsize=8)
def _entry_template(dirs: tuple[str, ...]) -> Template:
    # Compiled once per process: entry_html runs for every story of a build.
    env = html_environment(dirs)
    try:
        return env.get_template(ENTRY_TEMPLATE)
    except TemplateError as exc:
        raise RenderError(ENTRY_TEMPLATE, str(exc)) from exc


# An incremental build re-renders only the feeds a change touched, but each
# of those holds up to ``feeds.size`` stories that did not change: their
# entry HTML comes from here instead of being rendered again.
_HTML_MEMO: IdentityMemo[str] = IdentityMemo(1024)


def entry_html(brief: Brief, cfg: Config) -> str:
    """The full story as HTML (feed content and the desk's feed preview)."""
    hit = _HTML_MEMO.get((cfg, brief))
    if hit is not None:
        return str(hit)
    dirs = search_path(cfg.paths.templates)
    # Feeds cap takes the way emails do: a brief with thousands of takes
    # must not make every feed that carries it megabytes long.
    shown, hidden = capped(groups(brief), cfg.feeds.max_takes)
    more_url = cfg.site.url(f"issues/{brief.slug}.html")
    if _typed_entry(dirs):
        html = clean(write_entry(brief, shown, hidden, more_url))
    else:
        try:
            html = clean(_entry_template(dirs).render(brief=brief, groups=shown, hidden=hidden, more_url=more_url))
        except TemplateError as exc:
            raise RenderError(f"{brief.slug}: {ENTRY_TEMPLATE}", str(exc)) from exc
    _HTML_MEMO.put((cfg, brief), (), html)
    return html


# The digest (templating.mirrored) of the feed/entry.html.j2 that write_entry
# mirrors. Another source (a user's override, an edit of the built-in file)
# renders through Jinja2; tests/render/test_feed_entry_writer.py fails until both agree again.
ENTRY_SHA256 = "fc8394af34265532703ff4a37b3d100ac9c5da790dcca286002472a9219c80dc"


def _typed_entry(dirs: tuple[str, ...]) -> bool:
    # The source alone: compiling the template (16 ms) is only needed where it is not the mirrored one.
    try:
        return mirrored(dirs, (ENTRY_TEMPLATE,), ENTRY_SHA256)
    except TemplateError as exc:
        raise RenderError(ENTRY_TEMPLATE, str(exc)) from exc


def write_entry(brief: Brief, shown: tuple[LensGroup, ...], hidden: int, more_url: str) -> str:
    """What feed/entry.html.j2 renders (trim_blocks and lstrip_blocks applied by hand), without Jinja2's cost."""
    out: list[str] = []
    if brief.dek:
        out.append(f"<p><strong>{_e(brief.dek)}</strong></p>\n")
    if brief.summary:
        out.append(f"<h2>Summary</h2>\n{brief.summary.html}\n")
    if brief.why_it_matters:
        out.append(f"<h2>Why it matters</h2>\n{brief.why_it_matters.html}\n")
    if brief.what_to_watch:
        out.append("<h2>What to watch</h2>\n<ul>\n")
        out.extend(f"<li>{item.html}</li>\n" for item in brief.what_to_watch)
        out.append("</ul>\n")
    for section in brief.sections:
        out.append(f"<h2>{_e(section.title)}</h2>\n{section.body.html}\n")
    if shown:
        out.append("<h2>How the world covered it</h2>\n")
        for group in shown:
            out.append(f"<h3>{_e(group.label)}</h3>\n<ul>\n" if group.label else "<h3>Also covered</h3>\n<ul>\n")
            items = group.rows + group.folded
            if items:
                out.append("<li>" + "</li>\n<li>".join(map(_take_item, items)) + "</li>\n")
            out.append("</ul>\n")
        if hidden:
            out.append(f'<p><a href="{_e(more_url)}">and {hidden} more</a></p>\n')
    if brief.canonical:
        out.append(f'<p><a href="{_e(brief.canonical)}">Read the full brief</a></p>\n')
    return "".join(out)


def _take_item(take: TakeView) -> str:
    outlet = _e(take.outlet)
    source, region, text_html, quote = take.source, take.region, take.text_html, take.quote
    head = f'<a href="{_e(source)}">{outlet}</a>' if source else outlet
    if region:
        head = f"{head}, {_e(region)}"
    if not (text_html or quote):
        return head
    attrs = _attrs(take.lang, take.dir)
    if text_html:
        head = f"{head} — <span{attrs}>{text_html}</span>"
    return f"{head}<blockquote{attrs}>“{_e(quote)}”</blockquote>" if quote else head


@functools.lru_cache(maxsize=64)
def _attrs(lang: str, direction: str) -> str:
    # A brief's takes share a few (lang, dir) pairs.
    return (f' lang="{_e(lang)}"' if lang else "") + f' dir="{_e(direction)}"'


# ------------------------------------------------------------------ entry data


def entry_id(brief: Brief, published: dt.datetime, cfg: Config) -> str:
    """``tag:host,YYYY-MM-DD:slug`` (RFC 4151); see the module docstring."""
    host = (urlsplit(cfg.site.base_url).hostname or "localhost").lower()
    day = published.astimezone(cfg.site.tz).date().isoformat()
    return f"tag:{host},{day}:{brief.slug}"


def entry_link(brief: Brief, cfg: Config) -> str:
    """The story's canonical URL, else its web issue page on this site."""
    return brief.canonical or cfg.site.url(f"issues/{brief.slug}.html")


def categories(brief: Brief) -> list[str]:
    """Tags, entities, then lens names that are real labels (not "unlabelled"); first spelling wins, case-insensitively."""
    seen: dict[str, str] = {}
    for name in (*brief.tags, *brief.entities, *(lens_label(lens) for lens in brief.lenses)):
        value = line(name)
        if value:
            seen.setdefault(value.casefold(), value)
    return list(seen.values())


def summary_text(brief: Brief) -> str:
    return clean(brief.dek or brief.summary.text).strip()


@dataclass(frozen=True)
class Entry:
    """Everything a feed entry needs, computed once per story for all feeds."""

    brief: Brief
    cfg: Config
    slug: str
    id: str
    title: str
    link: str
    published: dt.datetime
    updated: dt.datetime
    categories: tuple[str, ...]
    summary: str
    keys: tuple[tuple[str, str], ...]  # (tag slug, display name) of tags+entities

    @functools.cached_property
    def html(self) -> str:
        # Lazy: of thousands of stories only those in some feed's newest
        # ``size`` are ever rendered, and each only once for all its feeds.
        return entry_html(self.brief, self.cfg)


def aware(value: dt.datetime, what: str, slug: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise RenderError(f"feed entry {slug}", f"{what} must be timezone-aware, got {value.isoformat()}")
    return value


def make_entry(story: FeedStory, cfg: Config) -> Entry:
    brief, tz = story.brief, cfg.site.tz
    published = aware(story.published, "published", brief.slug).astimezone(tz).replace(microsecond=0)
    updated = aware(story.updated, "updated", brief.slug).astimezone(tz).replace(microsecond=0)
    keys: dict[str, str] = {}
    for name in (*brief.tags, *brief.entities):
        slug = tag_slug(name)
        if slug:
            keys.setdefault(slug, line(name))
    return Entry(
        brief=brief,
        cfg=cfg,
        slug=brief.slug,
        id=entry_id(brief, published, cfg),
        title=line(brief.title) or brief.slug,
        link=entry_link(brief, cfg),
        published=published,
        # An entry cannot have been updated before it was published.
        updated=max(updated, published),
        categories=tuple(categories(brief)),
        summary=summary_text(brief),
        keys=tuple(keys.items()),
    )

