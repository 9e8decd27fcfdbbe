"""Writing the public site's pages into ``public/`` after the feeds.

Story pages live at ``issues/<slug>.html`` (the emails' "view in browser"
links), so they are written where the web issue was; the list pages (home,
archive, tags, one page per tag), the manage page and the feed stylesheet
are rewritten after each change. Every write is atomic and skipped when the
bytes are unchanged, so an unchanged page keeps its ETag.

The archive is paginated oldest first: ``archive/<k>.html`` holds stories
``(k-1)·P+1 … k·P`` in date order and so never changes when a story
arrives, and ``archive/`` is the newest page (rel=prev/next link them). A
new story re-renders the newest page only (and, once every P stories, the
page that just filled up). What each list page was rendered from is kept
(in the store too), so an unchanged page is not rendered again, even by a
fresh process.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..briefs.model import Brief
from ..core.config import Config
from ..render import site
from ..render.site import StoryItem, TagItem
from ..render.templating import search_path
from ..store import engine as kv
from ..store import stories
from ..store.engine import Connection
from .briefcache import BriefCache
from .codedigest import code_digest
from .outputs import remove, write_atomic
from .siteitems import ItemCache

log = logging.getLogger(__name__)

HOME_STORIES = 20
ARCHIVE_PAGE = 100  # stories per archive page
XSL_NAME = "feed.xsl"
INPUTS_KEY = "site.page-inputs"  # kv: list page → digest of what it was rendered from


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
        self.items = ItemCache(cfg, cache)
        self._names: dict[str, str] = {}
        self._inputs: dict[str, str] | None = None  # list page → digest of its inputs (kv INPUTS_KEY)
        self._inputs_dirty = False
        # What the list pages were last written from (see write); None until a full write.
        self._listing: dict[str, stories.Listed] | None = None
        self._order: list[tuple[dt.datetime, str]] = []  # (published, slug) of the listing, oldest first
        self._counts: dict[str, int] = {}
        self._pages = 0  # archive pages last written (0: unknown, as in a fresh process)
        self._refs: Mapping[str, list[stories.StoryRef]] = {}
        self._salt_value: str | None = None

    def _write(self, rel: str, html: str) -> list[str]:
        return [rel] if write_atomic(self.cfg.paths.public / rel, html.encode("utf-8")) else []

    def story(self, conn: Connection, brief: Brief) -> list[str]:
        titles = stories.live_titles(conn, brief.related) if brief.related else {}
        return write_story_page(brief, self.cfg, titles)

    def forget(self) -> None:
        """After a failed write: the next one rewrites every list page."""
        self._listing = None
        self._inputs = None
        self._pages = 0

    def _name(self, conn: Connection, key: str) -> str:
        """A tag's display name as its newest story spells it (not rebuilt from the slug); kept per process."""
        if key not in self._names:
            refs = self._newest(conn, key, 1)
            self._names[key] = self.items.names(conn, refs[0]).get(key, key) if refs else key
        return self._names[key]

    def _unchanged(self, conn: Connection, rel: str, inputs: object) -> bool:
        """True when ``rel`` was rendered from the same inputs (by any process, with the same
        templates and settings) and is still there."""
        if self._inputs is None:
            raw = kv.get_kv(conn, INPUTS_KEY)
            kept = json.loads(raw) if raw else {}
            self._inputs = kept.get("pages", {}) if kept.get("salt") == self._salt() else {}
        digest = hashlib.sha256(repr(inputs).encode()).hexdigest()
        if self._inputs.get(rel) == digest and (self.cfg.paths.public / rel).exists():
            return True
        self._inputs[rel] = digest
        self._inputs_dirty = True
        return False

    def _newest(self, conn: Connection, key: str, limit: int) -> list[stories.StoryRef]:
        """The newest ``limit`` stories of a tag ("" for all), from what the feeds just read when they did."""
        known = self._refs.get(key)
        if known is not None and (len(known) >= limit or len(known) < self.cfg.feeds.size):
            return known[:limit]
        return stories.newest(conn, key or None, limit)

    def _salt(self) -> str:
        """What besides its inputs shapes a page: the settings, the renderers' code and the site templates' bytes."""
        if self._salt_value is None:
            digest = hashlib.sha256(repr((self.cfg.site, self.cfg.feeds, code_digest())).encode())
            for folder in search_path(self.cfg.paths.templates):
                for path in sorted((Path(folder) / "site").glob("*")):
                    digest.update(path.name.encode() + b"\0" + path.read_bytes())
            self._salt_value = digest.hexdigest()
        return self._salt_value

    def write(self, conn: Connection, tags: Iterable[str], changed: Sequence[str] | None = None,
              refs: Mapping[str, list[stories.StoryRef]] | None = None, *, fresh: bool = False) -> list[str]:
        """Home, archive, tags index, the pages of ``tags``, manage page and feed stylesheet.

        ``changed`` names the stories this sync recorded. When none of them
        changed what the list pages show (title, date, tags, being listed),
        the archive and tags index are left alone and nothing is read of the
        other stories: an edit of one story costs its own pages, not the
        folder's size (10k briefs: 400 ms → a few ms). When they did, the
        lists kept from the last write are updated with those stories alone
        and only the archive pages they fall on are rendered. None means
        "anything may have changed" (a build, a retry after a failed write):
        the lists are read whole from the store. ``fresh`` (a full build)
        renders every list page, whatever was kept.
        """
        wanted = set(tags)
        if fresh:
            self._inputs = {}
        # The feeds of this very transaction read the newest of each tag already.
        self._refs = refs or {}
        written: list[str] | None = None
        if changed is None or self._listing is None:
            self._load_listing(conn)
            written = self._write_lists(conn, wanted, 0)
        else:
            now = stories.listed(conn, changed)
            if all(now.get(slug) == self._listing.get(slug) for slug in changed):
                written = self._write_lists_unchanged(conn, wanted)
            if written is None:
                written = self._write_lists(conn, wanted, self._update_listing(changed, now, wanted))
        if self._inputs_dirty and self._inputs is not None:
            kv.set_kv(conn, INPUTS_KEY, json.dumps({"salt": self._salt(), "pages": self._inputs}, sort_keys=True))
            self._inputs_dirty = False
        return written

    def _load_listing(self, conn: Connection) -> None:
        listing = stories.listed(conn)
        counts: dict[str, int] = {}
        for entry in listing.values():
            for key in entry.feed_tags:
                counts[key] = counts.get(key, 0) + 1
        self._listing, self._counts = listing, counts
        self._order = sorted((entry.published_at, slug) for slug, entry in listing.items())

    def _update_listing(self, changed: Sequence[str], now: dict[str, stories.Listed], wanted: set[str]) -> int:
        """The kept lists with ``changed`` as the store has them now; the first archive position that moved."""
        assert self._listing is not None
        first = len(self._order)
        for slug in set(changed):
            old, new = self._listing.pop(slug, None), now.get(slug)
            if old is not None:
                at = bisect.bisect_left(self._order, (old.published_at, slug))
                del self._order[at]
                first = min(first, at)
                for key in old.feed_tags:
                    self._counts[key] -= 1
                    if not self._counts[key]:
                        del self._counts[key]
                wanted |= old.feed_tags
            if new is not None:
                self._listing[slug] = new
                at = bisect.bisect_left(self._order, (new.published_at, slug))
                self._order.insert(at, (new.published_at, slug))
                first = min(first, at)
                for key in new.feed_tags:
                    self._counts[key] = self._counts.get(key, 0) + 1
                wanted |= new.feed_tags
        return first

    def _write_lists_unchanged(self, conn: Connection, wanted: set[str]) -> list[str] | None:
        """The pages of ``wanted`` and the home page, if the lists are as last written; else None."""
        counts = self._counts
        names = {key: self._names.pop(key, None) for key in wanted & set(counts)}
        if any(self._name(conn, key) != old for key, old in names.items()):
            return None  # a tag spelled differently now: the tags index shows names
        all_tags = [TagItem(key, self._name(conn, key), n) for key, n in sorted(counts.items())]
        written = self._tag_pages(conn, wanted, all_tags)
        written += self._home(conn, self._newest(conn, "", HOME_STORIES), all_tags)
        return written + self._fixed()

    def _write_lists(self, conn: Connection, wanted: set[str], first: int) -> list[str]:
        """Every list page ``wanted`` touches, the home page, the archive pages from position ``first`` on, the tags index."""
        counts = self._counts
        written: list[str] = []
        try:
            for key in wanted - set(counts):
                self._names.pop(key, None)
                if key and remove(self.cfg.paths.public / "tags" / key / "index.html"):
                    written.append(f"tags/{key}/index.html")
            for key in wanted & set(counts):
                self._names.pop(key, None)  # its newest story may spell it differently now
            # The archive first: it shows only titles and dates, which a build's tail has without the
            # list items its worker may still be keeping (see Republisher.lists_first).
            written += self._archive(conn, first)
            all_tags = [TagItem(key, self._name(conn, key), n) for key, n in sorted(counts.items())]
            written += self._tag_pages(conn, wanted, all_tags)
            written += self._home(conn, self._newest(conn, "", HOME_STORIES), all_tags)
            if not self._unchanged(conn, "tags/index.html", all_tags):
                written += self._write("tags/index.html", site.tags_page(all_tags, self.cfg))
            return written + self._fixed()
        except BaseException:
            self.forget()  # a failure above leaves the next write a full one
            raise

    def _archive(self, conn: Connection, first: int) -> list[str]:
        """Archive pages from the one holding position ``first`` (oldest first) to the newest."""
        assert self._listing is not None
        order, size = self._order, ARCHIVE_PAGE
        pages = max(1, -(-len(order) // size))
        written: list[str] = []
        if pages != self._pages:
            # A page filled up (it moves to its own address, the one before
            # links to it) or emptied: the last pages change, and any beyond the end go.
            first = min(first, max(0, (min(pages, self._pages) - 2) * size))
            written += self._remove_pages_from(pages)
            self._pages = pages
        for number in range(min(first // size + 1, pages), pages + 1):
            newest = number == pages
            rel = "archive/index.html" if newest else f"archive/{number}.html"
            older = site.archive_url(self.cfg, number - 1) if number > 1 else None
            newer = None if newest else site.archive_url(self.cfg, None if number + 1 == pages else number + 1)
            items = [self._archive_item(slug, published) for published, slug in order[(number - 1) * size : number * size]]
            if not self._unchanged(conn, rel, (items, number, older, newer)):
                written += self._write(rel, site.archive_page(items, self.cfg, number=number, older=older, newer=newer))
        return written

    def _remove_pages_from(self, number: int) -> list[str]:
        """``archive/<k>.html`` for k ≥ ``number`` (the newest page lives at ``archive/`` only)."""
        folder = self.cfg.paths.public / "archive"
        try:
            names = [n for n in os.listdir(folder) if n.endswith(".html") and n[:-5].isdigit() and int(n[:-5]) >= number]
        except FileNotFoundError:
            return []
        return [f"archive/{n}" for n in sorted(names) if remove(folder / n)]

    def _archive_item(self, slug: str, published: dt.datetime) -> StoryItem:
        assert self._listing is not None
        title = self._listing[slug].title
        return StoryItem(slug, title, "", published.astimezone(self.cfg.site.tz).date(), "", site.page_url(self.cfg, slug))

    def _tag_pages(self, conn: Connection, wanted: set[str], all_tags: list[TagItem]) -> list[str]:
        written: list[str] = []
        for tag in all_tags:
            if tag.key in wanted:
                tag_refs = self._newest(conn, tag.key, self.cfg.feeds.size)
                items = [self.items.get(conn, r) for r in tag_refs]
                rel = f"tags/{tag.key}/index.html"
                # An edit of a story below the page's newest changes nothing on it.
                if not self._unchanged(conn, rel, (tag, items)):
                    written += self._write(rel, site.tag_page(tag, items, self.cfg))
        return written

    def _home(self, conn: Connection, refs: list[stories.StoryRef], all_tags: list[TagItem]) -> list[str]:
        top = sorted(all_tags, key=lambda t: (-t.count, t.name.casefold()))
        items = [self.items.get(conn, r) for r in refs]
        if self._unchanged(conn, "index.html", (items, top)):
            return []
        return self._write("index.html", site.home_page(items, self.cfg, top))

    def _fixed(self) -> list[str]:
        written = self._write("manage/index.html", site.manage_page(self.cfg))
        written += self._write(XSL_NAME, site.feed_xsl(self.cfg))
        if written:
            log.info("site pages written: %d", len(written))
        return written
