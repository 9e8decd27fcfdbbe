"""Writing the feed files of ``public/``: the main feed and one per tag or entity.

Work follows the change: a feed is rewritten only when the newest N stories
it is made of changed. The digest of what each feed was made from is kept
in the store, so a fresh process skips untouched feeds too. A feed that is
rewritten is spliced from its entries' kept parts (:mod:`.entrycache`):
only an entry whose story changed is rendered, and no stored brief is
parsed for the others, in this process or a fresh one.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Iterable

from .. import __version__
from ..core.config import Config
from ..render.feeds import FeedStory, feed_files, render_feeds
from ..store import engine as kv
from ..store import stories
from ..store.engine import Connection
from .briefcache import BriefCache
from .entrycache import EntryCache
from .outputs import remove, write_atomic

log = logging.getLogger(__name__)

MAIN_FEED = ""  # the tag key of the site-wide feed
FEED_NAMES = ("feed.atom", "feed.rss", "feed.json")


class FeedWriter:
    def __init__(self, cfg: Config, cache: BriefCache) -> None:
        self.cfg = cfg
        self.cache = cache
        self.entries = EntryCache(cfg, cache)
        self._settings = repr((cfg.site, cfg.feeds, __version__))

    def _newest(self, conn: Connection, tag: str) -> list[stories.StoryRef]:
        # With RFC 5005 archives the main feed needs every story (the feeds
        # module pages the older ones), so a change re-renders the archive too.
        whole = tag == MAIN_FEED and self.cfg.feeds.archive
        return stories.newest(conn, None if tag == MAIN_FEED else tag, None if whole else self.cfg.feeds.size)

    def warm(self, conn: Connection) -> None:
        """The main feed's kept entry parts, into memory (rendered if missing), as an edit would need them."""
        if not self.cfg.feeds.archive:  # with archives the main feed is made from the briefs
            self.entries.get_many(conn, self._newest(conn, MAIN_FEED), fresh=lambda _ref: False)

    def write(self, conn: Connection, tags: Iterable[str], *, force: bool = False, stale: Collection[str] = (),
              refs: dict[str, list[stories.StoryRef]] | None = None) -> list[str]:
        """Rewrite the feeds of ``tags`` whose members changed (all of them with ``force``; those of
        ``stale`` whatever their digest says: their files may be ahead of the store). ``refs`` gets
        each feed's members, newest first (the site pages list the same stories)."""
        written: list[str] = []
        held: set[str] = set()  # slugs some feed of this pass holds
        # Digests are stored after every render: the first write would take
        # SQLite's write lock and hold it across the renders that follow.
        digests: dict[str, str | None] = {}
        for tag in sorted(set(tags)):
            if tag != MAIN_FEED and not self.cfg.feeds.tag_feeds:
                continue
            written += self._write_one(conn, tag, held, digests, force=force, stale=tag in stale, seen=refs)
        for key, value in digests.items():
            if value is None:
                kv.delete_kv(conn, key)
            else:
                kv.set_kv(conn, key, value)
        if force:
            # A full build passes every feed: what none holds is kept for nothing.
            self.entries.prune(held)
        if written:
            log.info("feeds written: %s", ", ".join(written[:6]) + (" …" if len(written) > 6 else ""))
        return written

    def _write_one(self, conn: Connection, tag: str, held: set[str], digests: dict[str, str | None], *, force: bool,
                   stale: bool = False, seen: dict[str, list[stories.StoryRef]] | None = None) -> list[str]:
        prefix = "" if tag == MAIN_FEED else f"tags/{tag}/"
        folder = self.cfg.paths.public / prefix
        refs = self._newest(conn, tag)
        if seen is not None:
            seen[tag] = refs
        kv_key = f"feed.members:{tag}"
        if not refs and tag != MAIN_FEED:
            digests[kv_key] = None
            return [prefix + name for name in FEED_NAMES if remove(folder / name)]
        # An edit to a story outside this feed's newest N changes nothing in
        # it: skip the render (this is most of an incremental build). The
        # settings that shape a feed are part of the digest; a full build
        # (force) renders everything, so template edits show too.
        members = hashlib.sha256(
            repr((self._settings, [(r.slug, r.content_hash, r.updated_at.isoformat()) for r in refs])).encode()
        ).hexdigest()
        if not (force or stale) and kv.get_kv(conn, kv_key) == members and all((folder / name).exists() for name in FEED_NAMES):
            return []
        if tag == MAIN_FEED and self.cfg.feeds.archive:
            # RFC 5005 archive pages hold every story: the whole render, from the briefs.
            feed_stories = [FeedStory(self.cache.brief(conn, r), r.published_at, r.updated_at) for r in refs]
            files = render_feeds(feed_stories, self.cfg, only={tag})
        else:
            # A full build renders each entry again, once however many feeds hold it.
            parts = self.entries.get_many(conn, refs, fresh=lambda r: force and r.slug not in held)
            files = feed_files(tag, parts, self.cfg)
        held.update(r.slug for r in refs)
        written = []
        for rel, data in files.items():
            keep = not rel.startswith("tags/") if tag == MAIN_FEED else rel.startswith(prefix)
            if keep and write_atomic(self.cfg.paths.public / rel, data):
                written.append(rel)
        digests[kv_key] = members
        return written
