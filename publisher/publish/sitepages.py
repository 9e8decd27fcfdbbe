"""Writing the public site's pages into ``public/`` after the feeds.

Story pages live at ``issues/<slug>.html`` (the emails' "view in browser"
links), so they are written where the web issue was; the list pages (home,
archive, tags, one page per tag), the manage page and the feed stylesheet
are rewritten after each change. Every write is atomic and skipped when the
bytes are unchanged, so an unchanged page keeps its ETag.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence

from cachetools import LRUCache

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
        self._names: dict[str, str] = {}
        self._inputs: dict[str, str] = {}
        # What the list pages were last written from (see write); None until a full write.
        self._listing: dict[str, stories.Listed] | None = None
        self._counts: dict[str, int] = {}
        # A story's list item by content: an edit re-renders the home and tag pages from these.
        self._items: LRUCache[tuple[str, str], StoryItem] = LRUCache(maxsize=4096)

    def _write(self, rel: str, html: str) -> list[str]:
        return [rel] if write_atomic(self.cfg.paths.public / rel, html.encode("utf-8")) else []

    def story(self, conn: Connection, brief: Brief) -> list[str]:
        titles = stories.live_titles(conn, brief.related) if brief.related else {}
        return write_story_page(brief, self.cfg, titles)

    def _item(self, conn: Connection, ref: stories.StoryRef) -> StoryItem:
        key = (ref.slug, ref.content_hash)
        item = self._items.get(key)
        if item is None:
            item = self._items[key] = site.story_item(self.cache.brief(conn, ref), self.cfg)
        return item

    def forget(self) -> None:
        """After a failed write: the next one rewrites every list page."""
        self._listing = None

    def _name(self, conn: Connection, key: str) -> str:
        """A tag's display name as its newest story spells it (not rebuilt from the slug); kept per process."""
        if key not in self._names:
            refs = stories.newest(conn, key, 1)
            brief = self.cache.brief(conn, refs[0]) if refs else None
            names = (*brief.tags, *brief.entities) if brief else ()
            self._names[key] = " ".join(next((n for n in names if tag_slug(n) == key), key).split())
        return self._names[key]

    def _unchanged(self, rel: str, inputs: object) -> bool:
        """True when ``rel`` was rendered from the same inputs by this process and is still there."""
        digest = hashlib.sha256(repr(inputs).encode()).hexdigest()
        if self._inputs.get(rel) == digest and (self.cfg.paths.public / rel).exists():
            return True
        self._inputs[rel] = digest
        return False

    def write(self, conn: Connection, tags: Iterable[str], changed: Sequence[str] | None = None) -> list[str]:
        """Home, archive, tags index, the pages of ``tags``, manage page and feed stylesheet.

        ``changed`` names the stories this sync recorded. When none of them
        changed what the list pages show (title, date, tags, being listed),
        the archive and tags index are left alone and nothing is read of the
        other stories: an edit of one story costs its own pages, not the
        folder's size (10k briefs: 400 ms → a few ms). None means "anything
        may have changed" (a build, a retry after a failed write).
        """
        wanted = set(tags)
        if changed is not None and self._listing is not None:
            written = self._write_lists_unchanged(conn, wanted, changed)
            if written is not None:
                return written
        return self._write_all(conn, wanted)

    def _write_lists_unchanged(self, conn: Connection, wanted: set[str], changed: Sequence[str]) -> list[str] | None:
        """The pages of ``wanted`` and the home page, if the lists are as last written; else None."""
        assert self._listing is not None
        now = stories.listed(conn, changed)
        if any(now.get(slug) != self._listing.get(slug) for slug in changed):
            return None
        counts = self._counts
        names = {key: self._names.pop(key, None) for key in wanted & set(counts)}
        if any(self._name(conn, key) != old for key, old in names.items()):
            return None  # a tag spelled differently now: the tags index shows names
        all_tags = [TagItem(key, self._name(conn, key), n) for key, n in sorted(counts.items())]
        written = self._tag_pages(conn, wanted, all_tags)
        written += self._home(conn, stories.newest(conn, None, HOME_STORIES), all_tags)
        return written + self._fixed()

    def _write_all(self, conn: Connection, wanted: set[str]) -> list[str]:
        written: list[str] = []
        refs = stories.newest(conn, None, None)
        listing = stories.listed(conn)
        counts: dict[str, int] = {}
        for entry in listing.values():
            for key in entry.feed_tags:
                counts[key] = counts.get(key, 0) + 1
        for key in wanted - set(counts):
            self._names.pop(key, None)
            if key and remove(self.cfg.paths.public / "tags" / key / "index.html"):
                written.append(f"tags/{key}/index.html")
        for key in wanted & set(counts):
            self._names.pop(key, None)  # its newest story may spell it differently now
        all_tags = [TagItem(key, self._name(conn, key), n) for key, n in sorted(counts.items())]
        written += self._tag_pages(conn, wanted, all_tags)
        written += self._home(conn, refs[:HOME_STORIES], all_tags)
        # The archive needs only titles and dates: no brief is parsed for it.
        archive = [
            StoryItem(r.slug, listing[r.slug].title if r.slug in listing else r.slug, "",
                      r.published_at.astimezone(self.cfg.site.tz).date(), "", site.page_url(self.cfg, r.slug))
            for r in refs
        ]
        if not self._unchanged("archive/index.html", archive):
            written += self._write("archive/index.html", site.archive_page(archive, self.cfg))
        if not self._unchanged("tags/index.html", all_tags):
            written += self._write("tags/index.html", site.tags_page(all_tags, self.cfg))
        written += self._fixed()
        # Kept only once every page is written: a failure above leaves the next write a full one.
        self._listing, self._counts = listing, counts
        return written

    def _tag_pages(self, conn: Connection, wanted: set[str], all_tags: list[TagItem]) -> list[str]:
        written: list[str] = []
        for tag in all_tags:
            if tag.key in wanted:
                tag_refs = stories.newest(conn, tag.key, self.cfg.feeds.size)
                written += self._write(f"tags/{tag.key}/index.html", site.tag_page(tag, [self._item(conn, r) for r in tag_refs], self.cfg))
        return written

    def _home(self, conn: Connection, refs: list[stories.StoryRef], all_tags: list[TagItem]) -> list[str]:
        top = sorted(all_tags, key=lambda t: (-t.count, t.name.casefold()))
        return self._write("index.html", site.home_page([self._item(conn, r) for r in refs], self.cfg, top))

    def _fixed(self) -> list[str]:
        written = self._write("manage/index.html", site.manage_page(self.cfg))
        written += self._write(XSL_NAME, site.feed_xsl(self.cfg))
        if written:
            log.info("site pages written: %d", len(written))
        return written
