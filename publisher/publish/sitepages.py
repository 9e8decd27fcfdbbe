"""Writing the public site's pages into ``public/`` after the feeds.

Story pages live at ``issues/<slug>.html`` (the emails' "view in browser"
links), so they are written where the web issue was; the list pages (home,
archive, tags, one page per tag), the manage page and the feed stylesheet
are rewritten after each change. Every write is atomic and skipped when the
bytes are unchanged, so an unchanged page keeps its ETag.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ..briefs.model import Brief
from ..core.config import Config
from ..render import site
from ..briefs.slugs import tag_slug
from ..render.site import StoryItem, TagItem
from ..store import stories
from ..store.engine import Connection
from .briefcache import BriefCache
from .outputs import remove, write_atomic

log = logging.getLogger(__name__)

HOME_STORIES = 20
XSL_NAME = "feed.xsl"


def write_story_page(brief: Brief, cfg: Config, related_titles: dict[str, str] | None = None) -> list[str]:
    """public/issues/<slug>.html: the story's web page (no email footer)."""
    rel = f"issues/{brief.slug}.html"
    html = site.story_page(brief, cfg, related_titles=related_titles)
    return [rel] if write_atomic(cfg.paths.public / rel, html.encode("utf-8")) else []


def write_digest_page(briefs: list[Brief], cfg: Config, *, label: str, name: str) -> list[str]:
    """public/issues/<name>.html for a digest; the digest workflow picks ``name``."""
    rel = f"issues/{name}.html"
    html = site.digest_page(briefs, cfg, label=label)
    return [rel] if write_atomic(cfg.paths.public / rel, html.encode("utf-8")) else []


class SiteWriter:
    def __init__(self, cfg: Config, cache: BriefCache) -> None:
        self.cfg = cfg
        self.cache = cache

    def _write(self, rel: str, html: str) -> list[str]:
        return [rel] if write_atomic(self.cfg.paths.public / rel, html.encode("utf-8")) else []

    def story(self, conn: Connection, brief: Brief) -> list[str]:
        titles = stories.live_titles(conn, brief.related) if brief.related else {}
        return write_story_page(brief, self.cfg, titles)

    def _item(self, conn: Connection, ref: stories.StoryRef) -> StoryItem:
        return site.story_item(self.cache.brief(conn, ref), self.cfg)

    def _tag(self, conn: Connection, key: str) -> tuple[TagItem, list[stories.StoryRef]] | None:
        refs = stories.newest(conn, key, None)
        if not refs:
            return None
        # The display name as the newest story spells it (not rebuilt from the slug).
        newest = self.cache.brief(conn, refs[0])
        name = next((n for n in (*newest.tags, *newest.entities) if tag_slug(n) == key), key)
        return TagItem(key, " ".join(name.split()), len(refs)), refs

    def write(self, conn: Connection, tags: Iterable[str]) -> list[str]:
        """Home, archive, tags index, the pages of ``tags``, manage page and feed stylesheet."""
        written: list[str] = []
        refs = stories.newest(conn, None, None)
        titles = stories.live_titles(conn)
        items = [self._item(conn, r) for r in refs[:HOME_STORIES]]
        # The archive needs only titles and dates: no brief is parsed for it.
        archive = [
            StoryItem(r.slug, titles.get(r.slug, r.slug), "", r.published_at.astimezone(self.cfg.site.tz).date(), "", site.page_url(self.cfg, r.slug))
            for r in refs
        ]
        all_tags: list[TagItem] = []
        for key in sorted(stories.live_feed_tags(conn)):
            found = self._tag(conn, key)
            if found is None:
                continue
            tag, tag_refs = found
            all_tags.append(tag)
            if key in tags:
                written += self._write(f"tags/{key}/index.html", site.tag_page(tag, [self._item(conn, r) for r in tag_refs[: self.cfg.feeds.size]], self.cfg))
        for key in set(tags) - {t.key for t in all_tags}:
            if key and remove(self.cfg.paths.public / "tags" / key / "index.html"):
                written.append(f"tags/{key}/index.html")
        top = sorted(all_tags, key=lambda t: (-t.count, t.name.casefold()))
        written += self._write("index.html", site.home_page(items, self.cfg, top))
        written += self._write("archive/index.html", site.archive_page(archive, self.cfg))
        written += self._write("tags/index.html", site.tags_page(all_tags, self.cfg))
        written += self._write("manage/index.html", site.manage_page(self.cfg))
        written += self._write(XSL_NAME, site.feed_xsl(self.cfg))
        if written:
            log.info("site pages written: %d", len(written))
        return written
