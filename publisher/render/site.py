"""The public site: home, story pages, digest pages, archive, tags, manage, the feed XSL.

Its own templates (``templates/site/``), not the email's: a story page has
the full coverage table grouped by lens and no unsubscribe footer. Pure:
values in, HTML out; dates come from the briefs and the store, never from
the clock. No JavaScript anywhere, so the public CSP stays strict.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, TemplateError

from ..briefs.model import Brief
from ..briefs.slugs import tag_slug
from ..core.config import Config
from ..core.errors import RenderError
from . import coverage as cov
from .email import coverage_line, digest_takes, related_links, story_url, text_direction
from . import archive_html, story_html
from .templating import html_environment, mirrored, search_path
from .text import clean_line


@dataclass(frozen=True)
class StoryItem:
    """One story in a list (home, archive, tag pages)."""

    slug: str
    title: str
    dek: str
    date: dt.date
    coverage: str  # "17 takes · 5 lenses · 8 regions — …", '' without takes
    url: str  # its page on this site


@dataclass(frozen=True)
class TagItem:
    key: str  # path-safe tag slug
    name: str  # display name, as the briefs spell it
    count: int


def page_url(cfg: Config, slug: str) -> str:
    return cfg.site.url(f"issues/{slug}.html")


def tag_url(cfg: Config, key: str) -> str:
    return cfg.site.url(f"tags/{key}/")


def story_item(brief: Brief, cfg: Config) -> StoryItem:
    return StoryItem(
        slug=brief.slug,
        title=clean_line(brief.title) or brief.slug,
        dek=clean_line(brief.dek or ""),
        date=brief.published_at(cfg.site.tz).astimezone(cfg.site.tz).date(),
        coverage=coverage_line(brief),
        url=page_url(cfg, brief.slug),
    )


@functools.lru_cache(maxsize=8)
def _environment(dirs: tuple[str, ...]) -> Environment:
    env = html_environment(dirs)
    env.filters["day"] = lambda d: f"{d:%-d %B %Y}"
    return env


def _context(cfg: Config, **context: Any) -> dict[str, Any]:
    """What every site template sees besides its own values."""
    feeds = context.pop("feeds", None) or feed_links(cfg, "")
    return dict(site=cfg.site, dir=text_direction(cfg), feeds=feeds, home=cfg.site.url(""), **context)


def _render(cfg: Config, name: str, what: str, **context: Any) -> str:
    env = _environment(search_path(cfg.paths.templates))
    try:
        return env.get_template(f"site/{name}").render(_context(cfg, **context))
    except TemplateError as exc:
        raise RenderError(what, f"template site/{name}: {exc}") from exc


def feed_links(cfg: Config, prefix: str) -> list[dict[str, str]]:
    """Atom, RSS and JSON Feed of the site (prefix '') or of one tag (``tags/<key>/``)."""
    return [
        {"type": "application/atom+xml", "label": "Atom", "url": cfg.site.url(prefix + "feed.atom")},
        {"type": "application/rss+xml", "label": "RSS", "url": cfg.site.url(prefix + "feed.rss")},
        {"type": "application/feed+json", "label": "JSON Feed", "url": cfg.site.url(prefix + "feed.json")},
    ]


def _tags_of(brief: Brief) -> list[dict[str, str]]:
    seen: dict[str, str] = {}
    for name in (*brief.tags, *brief.entities):
        key = tag_slug(name)
        if key and clean_line(name):
            seen.setdefault(key, clean_line(name))
    return [{"key": k, "name": v} for k, v in seen.items()]


def story_page(brief: Brief, cfg: Config, *, related_titles: Mapping[str, str] | None = None) -> str:
    """A story's web page: the brief in full and every take, grouped by lens.

    Written by render.story_html while the site templates are the shipped
    ones (the same characters, several times faster), else by Jinja2."""
    tags = _tags_of(brief)
    for tag in tags:
        tag["url"] = tag_url(cfg, tag["key"])
    context = dict(
        brief=brief, item=story_item(brief, cfg), counts=cov.counts_line(brief),
        regions=cov.region_counts(brief), lenses=cov.lens_counts(brief), groups=cov.groups(brief),
        related=related_links(brief, cfg, dict(related_titles or {})), tags=tags,
        canonical=story_url(brief, cfg), url=page_url(cfg, brief.slug),
    )
    if mirrored(search_path(cfg.paths.templates), story_html.TEMPLATES, story_html.SOURCES_SHA256):
        return story_html.story_html(_context(cfg, **context))
    return _render(cfg, "story.html", f"story page {brief.slug}", **context)


def digest_page(briefs: Sequence[Brief], cfg: Config, *, label: str) -> str:
    """A digest's web page, from its briefs and label (the caller decides the file name)."""
    stories = [
        {"item": story_item(b, cfg), "summary": b.summary.html, "takes": digest_takes(b)}
        for b in briefs
        if not b.is_draft
    ]
    return _render(cfg, "digest.html", f"digest page {label}", label=clean_line(label), stories=stories)


def home_page(items: Sequence[StoryItem], cfg: Config, tags: Sequence[TagItem] = ()) -> str:
    return _render(cfg, "home.html", "home page", items=items, tags=list(tags)[:20])


def archive_url(cfg: Config, number: int | None) -> str:
    """Archive page ``number`` (1 is the oldest); None: the newest page, ``archive/``."""
    return cfg.site.url("archive/" if number is None else f"archive/{number}.html")


def archive_page(items: Sequence[StoryItem], cfg: Config, *, number: int = 1, older: str | None = None,
                 newer: str | None = None) -> str:
    """One page of the archive, its stories by month, newest first; ``older``/``newer`` link the pages
    beside it (rel=prev/next, for readers and crawlers)."""
    months: dict[str, list[StoryItem]] = {}
    for item in sorted(items, key=lambda i: (i.date, i.slug), reverse=True):
        months.setdefault(f"{item.date:%B %Y}", []).append(item)
    context: dict[str, Any] = dict(months=list(months.items()), number=number, older=older, newer=newer)
    if mirrored(search_path(cfg.paths.templates), archive_html.TEMPLATES, archive_html.SOURCES_SHA256):
        return archive_html.archive_html(_context(cfg, **context))
    return _render(cfg, "archive.html", "archive page", **context)


def tags_page(tags: Sequence[TagItem], cfg: Config) -> str:
    return _render(cfg, "tags.html", "tags page", tags=sorted(tags, key=lambda t: t.name.casefold()), tag_url=functools.partial(tag_url, cfg))


def tag_page(tag: TagItem, items: Sequence[StoryItem], cfg: Config) -> str:
    feeds = feed_links(cfg, f"tags/{tag.key}/") if cfg.feeds.tag_feeds else feed_links(cfg, "")
    return _render(cfg, "tag.html", f"tag page {tag.key}", tag=tag, items=items, feeds=feeds)


def manage_page(cfg: Config) -> str:
    return _render(cfg, "manage.html", "manage page")


def feed_xsl(cfg: Config) -> str:
    """The stylesheet a browser applies to a feed opened directly (Atom and RSS)."""
    return _render(cfg, "feed.xsl", "feed stylesheet")
