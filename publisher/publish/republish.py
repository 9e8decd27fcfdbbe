"""After stories change: the feeds and site pages they touch, in the caller's transaction or their own.

One edit is one transaction: when a sync changed a single file, the
pipeline calls :meth:`Republisher.write` inside that file's transaction, so
its story row, its issue, its feeds' member digests and its site pages
commit (or roll back) together. A sync of several files writes the feeds
once for all of them afterwards (:meth:`Republisher.write_after`), in a
transaction of its own.

Files are written before the commit. When the transaction then rolls back,
the files may show what the store does not: those feeds are marked
``stale`` (rewritten next time whatever their digest says) and the site's
list pages are rewritten whole.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from ..core.config import Config
from ..core.errors import PublisherError
from ..store.engine import Connection, DatabaseFailure, Engine
from ..store.stories import StoryRef
from .briefcache import BriefCache
from .feedfiles import FeedWriter
from .reading import failure_message
from .results import SyncResult
from .retry import Retries
from .sitepages import SiteWriter

log = logging.getLogger(__name__)

RETRY_KEY = "<feeds>"
# Failures the pipeline expects (bad input, a full disk, a lost database).
EXPECTED = (PublisherError, OSError, DatabaseFailure)


class Republisher:
    def __init__(self, cfg: Config, briefs: BriefCache, retries: Retries) -> None:
        self.cfg = cfg
        self.retries = retries
        self.feeds = FeedWriter(cfg, briefs)
        self.site = SiteWriter(cfg, briefs)
        self.pending: set[str] = set()  # tag keys whose feeds failed to write: retried every scan
        self.stale: set[str] = set()  # tag keys whose files may be ahead of the store (a rollback)
        self.changed: set[str] = set()  # slugs whose rows changed since the lists were last written
        # Set while a build's worker renders the feed entries and list items the tail will show:
        # the site's lists go first (the archive needs neither), the feeds once the entries are in.
        self.lists_first = False

    def write(self, conn: Connection, touched: Iterable[str], changed: Sequence[str] | None, *, force: bool = False) -> list[str]:
        """Feeds of ``touched`` (and any left pending) and the site pages, in ``conn``'s transaction.

        ``changed`` names the stories whose rows changed (None: anything may
        have, as in a build or after a failure)."""
        keys = set(touched) | self.pending | self.stale
        if not keys:
            return []
        full = force or bool(self.pending or self.stale)
        refs: dict[str, list[StoryRef]] = {}  # each feed's newest: the site's lists show the same
        listed = None if full or changed is None else sorted({*changed, *self.changed})
        if self.lists_first:
            written = self.site.write(conn, keys, listed, None, fresh=force)
            return written + self.feeds.write(conn, keys, force=force, stale=self.stale)
        written = self.feeds.write(conn, keys, force=force, stale=self.stale, refs=refs)
        return written + self.site.write(conn, keys, listed, refs, fresh=force)

    def warm(self, conn: Connection) -> list[str]:
        """What the first edit of a process would load, loaded now: the main feed's entry parts and the
        site's lists (the archive, home and tags index checked against their kept inputs: the files
        written again, if any). Not every tag feed and tag page: with thousands of entity feeds that
        would be thousands of reads at each start, for a few an edit touches."""
        self.feeds.warm(conn)
        return self.site.write(conn, ())

    def write_within(self, conn: Connection, touched: Iterable[str], changed: Sequence[str], result: SyncResult) -> bool:
        """:meth:`write` in the caller's transaction; a file that cannot be written (a full disk) leaves
        the feeds pending for the next scan and the caller's rows committing. False if so."""
        keys = set(touched)
        try:
            result.written += self.write(conn, keys, changed)
        except (PublisherError, OSError) as exc:
            self._failed(keys, exc, result)
            return False
        return True

    def _failed(self, keys: set[str], exc: BaseException, result: SyncResult) -> None:
        self.rolled_back(keys)
        self.pending |= keys
        message = failure_message(self.cfg.paths.public, exc).replace("cannot publish", "feeds not written")
        if self.retries.failed(RETRY_KEY, None, message):
            log.error("%s (retried on the next scan)", message)
        later = self.retries.seconds_to_next()
        if later is not None:
            result.retry_after = later if result.retry_after is None else min(result.retry_after, later)

    def committed(self) -> None:
        """The transaction of the last :meth:`write` committed: nothing is pending any more."""
        self.pending = set()
        self.stale = set()
        self.changed = set()
        if self.retries.succeeded(RETRY_KEY):
            log.info("feeds written again")

    def rolled_back(self, touched: Iterable[str]) -> None:
        """The transaction of the last :meth:`write` rolled back after files may have been written."""
        self.stale |= set(touched) | self.pending
        self.site.forget()

    def write_after(self, engine: Engine, touched: set[str], result: SyncResult, *, force: bool = False) -> None:
        """Every feed of ``touched`` plus those a failed write left behind, in a transaction of their own;
        on failure they wait for the next scan."""
        if not (touched or self.pending or self.stale):
            return
        try:
            with engine.begin() as conn:
                result.written += self.write(conn, touched, [*result.published, *result.removed], force=force)
        except EXPECTED as exc:
            self._failed(touched, exc, result)
            return
        except BaseException:
            self.rolled_back(touched)
            raise
        self.committed()
