"""Recording read files in the store: the decisions per file, the writes in batches.

A build records a chunk of a few hundred files in one transaction. Asking
the store about each story and writing its rows one statement at a time
cost the parent three to four round trips per brief (a quarter of a 10k
build's parent time); here the chunk's story states are read in one query,
kept in step in memory as the chunk's own writes change them, and the
writes go out as executemany runs when the chunk is done
(:class:`publisher.store.stories.Batch`, :func:`publisher.store.files.save_many`).
A sync records one file the same way, with a batch of one.

Nothing here touches the in-memory :class:`FileIndex` except through the
caller: it applies each :class:`Recorded` only after the commit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..store import files as files_store
from ..store import stories
from ..store.engine import Connection
from . import watch
from .fileindex import FileIndex
from .reading import Parsed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recorded:
    """What recording one file decided, applied to the in-memory index only after its commit."""

    indexed: watch.Indexed
    changed_slug: str | None
    touched: frozenset[str]
    error: str | None
    retired: str | None = None
    lost: str | None = None  # the slug this file claims but another file publishes


class Recorder:
    """The story and file writes of one transaction; :meth:`flush` sends them."""

    def __init__(self, conn: Connection, briefs: Path, index: FileIndex, now: dt.datetime) -> None:
        self.conn = conn
        self.now = now
        self.briefs = briefs
        self.index = index
        self._states: dict[str, stories.StoryState | None] = {}
        self._stories = stories.Batch()
        self._files: list[tuple[files_store.FileRow, str | None]] = []

    # -- the store's view, kept in step with the queued writes -------------

    def prefetch(self, slugs: Iterable[str]) -> None:
        """Read the states of ``slugs`` in one query (a chunk's slugs and the slugs its files had)."""
        wanted = {s for s in slugs if s not in self._states}
        found = stories.states(self.conn, wanted)
        for slug in wanted:
            self._states[slug] = found.get(slug)

    def state(self, slug: str) -> stories.StoryState | None:
        if slug not in self._states:
            self.prefetch([slug])
        return self._states[slug]

    def flush(self) -> None:
        self._stories.flush(self.conn)
        files, self._files = self._files, []
        if files:
            files_store.save_many(self.conn, files, now=self.now)

    # -- decisions ----------------------------------------------------------

    def _slug_owner(self, parsed: Parsed) -> str | None:
        """Another file that already publishes this slug, if any (a lookup, not a walk: builds stay linear)."""
        assert parsed.slug is not None
        return next((p for p in self.index.holders(parsed.slug) if p != parsed.path and (self.briefs / p).exists()), None)

    def _record_story(self, parsed: Parsed) -> tuple[bool, set[str]]:
        """Store a good parse as its story; (whether the story changed, tag keys it had before)."""
        assert parsed.slug is not None and parsed.published_at is not None
        record = stories.StoryRecord(
            parsed.slug, parsed.path, parsed.title, parsed.status, parsed.source, parsed.sha256, parsed.published_at, parsed.tags
        )
        row = self.state(parsed.slug)
        fresh = stories.StoryState(parsed.slug, parsed.path, parsed.status, parsed.sha256, frozenset(parsed.tags), False)
        if row is None:
            # First sight: the story is as new as its date says, so a build
            # from a fresh store gives the same bytes as from an old one.
            self._stories.insert(record, updated_at=parsed.updated or parsed.published_at, now=self.now)
            self._states[parsed.slug] = fresh
            return True, set()
        if row.content_hash != parsed.sha256 or row.deleted or row.path != parsed.path:
            edited = row.content_hash != parsed.sha256 or parsed.updated is not None
            self._stories.update(record, updated_at=(parsed.updated or self.now) if edited else None)
            self._states[parsed.slug] = fresh
            return True, set(row.feed_tags)
        self._stories.set_error(parsed.slug, None)
        return False, set()

    def record(self, parsed: Parsed) -> Recorded:
        """Queue the writes for one read file."""
        previous = self.index.get(parsed.path)
        touched: set[str] = set()
        changed_slug: str | None = None
        retired: str | None = None
        slug, error, lost = parsed.slug, parsed.error, None
        if error is None and slug is not None:
            owner = self._slug_owner(parsed)
            if owner is not None:
                error = f"{self.briefs / parsed.path}: slug {slug!r} is already used by {owner}"
                slug, lost = None, slug
        if error is not None:
            log.warning("rejected %s", error)
            if previous is not None and previous.slug:
                self._stories.set_error(previous.slug, error)
        else:
            assert slug is not None
            changed, before = self._record_story(parsed)
            changed_slug = slug if changed else None
            touched |= before | set(parsed.tags)
            # An edit that changed the slug leaves the old story behind: retire it.
            if previous is not None and previous.slug and previous.slug != slug:
                if self.retire(previous.slug, parsed.path, touched):
                    retired = previous.slug
        new = watch.Indexed(parsed.stat, parsed.sha256, slug if error is None else (previous.slug if previous else None))
        self._files.append((files_store.FileRow(parsed.path, parsed.stat.mtime_ns, parsed.stat.size, parsed.sha256, new.slug), error))
        return Recorded(new, changed_slug, frozenset(touched), error, retired, lost)

    def retire(self, slug: str, path: str, touched: set[str]) -> bool:
        """Mark ``slug`` deleted if ``path`` is still its file; its tags join ``touched``."""
        row = self.state(slug)
        if row is None or row.deleted or row.path != path:
            return False
        self._stories.retire(slug, now=self.now)
        self._states[slug] = dataclasses.replace(row, deleted=True)
        touched |= row.feed_tags
        return True

    def forget_file(self, path: str, touched: set[str]) -> str | None:
        """A file gone from the folder: its row dropped; the slug retired, if it was its story's."""
        gone = self.index[path]
        self.flush()  # the files row goes now, after any queued save of it
        files_store.forget(self.conn, path)
        retired = gone.slug if gone.slug and self.retire(gone.slug, path, touched) else None
        self.flush()
        return retired
