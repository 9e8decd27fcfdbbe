"""The pipeline: from the briefs folder to stored stories, public files and issues.

:class:`Pipeline` carries out what :func:`publisher.publish.watch.plan`
decides: read and parse changed files, record stories in the store (the
last good version stays when an edit breaks a brief), write web issues and
the feeds whose contents changed, and keep one email issue per story in
step with it (until it is being sent: an edit never re-sends). Digests and
story issues are rooms of their own (:mod:`.digests`, :mod:`.issues`); the
pipeline wires them to one brief cache and one lock.

Work is proportional to what changed: feeds are re-rendered only for the
tags a changed story had or has, from the store's newest-N query, parsing
only those stories (with the cache).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..briefs.model import Brief
from ..core.clock import Clock, system_clock
from ..core.config import Config
from ..core.errors import PublisherError
from ..core.states import Cadence, IssueState
from ..render.email import RenderedIssue, render_hash, render_story
from ..store import files as files_store
from ..store import stories
from ..store.engine import Connection, DatabaseFailure, Engine
from . import headstart, related, watch, websub
from .briefcache import BriefCache
from .digests import Digests, DigestSchedule
from .feedfiles import MAIN_FEED
from .fileindex import FileIndex
from .issues import Released, StoryIssues
from .outputs import remove_web_issue
from .heads import FirstPass
from .reading import Parsed, build_chunk, failure_message, read_and_parse, set_titles_ahead, write_web_issue
from .recording import Recorded, Recorder
from .related import pages_again
from .results import Status, SyncResult
from .republish import Republisher
from .retry import Retries
from .workers import WorkerPool, fewer_collections, map_chunks
from .workers import count as count_workers

log = logging.getLogger(__name__)


# Failures the pipeline expects (bad input, a full disk, a lost database);
# anything else is a bug, still isolated to its file but logged with a traceback.
EXPECTED = (PublisherError, OSError, DatabaseFailure)


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


class Pipeline:
    """One per process; every public method is safe to call from any thread.

    Two locks: ``_sync_lock`` makes scans and builds take turns; ``_lock``
    (shared with the desk's approve and hold, digests and issues) is held
    only while one file's rows are written and committed, never while other
    files are read, parsed or rendered, so the desk stays responsive while a
    slow brief is processed.
    """

    def __init__(self, cfg: Config, engine: Engine, *, clock: Clock = system_clock) -> None:
        self.cfg = cfg
        self.engine = engine
        self.clock = clock
        self._lock = threading.RLock()
        self._sync_lock = threading.RLock()
        self._index: FileIndex | None = None
        self.tree = watch.Tree()  # what the last full scan saw, for the cheap safety-net sweep
        self.retries = Retries(cfg.schedule.scan_interval)
        self.briefs = BriefCache(cfg)
        self.outputs = Republisher(cfg, self.briefs, self.retries)
        self.feeds, self.site = self.outputs.feeds, self.outputs.site
        self.issues = StoryIssues(cfg, engine, self.briefs, clock, self._lock)
        self.digests = Digests(cfg, engine, self.briefs, clock, self._lock)

    def _now(self) -> dt.datetime:
        return self.clock().astimezone(dt.timezone.utc)

    def load_index(self) -> FileIndex:
        """What the store knows of the briefs folder (read once, then kept in step with each commit)."""
        if self._index is None:
            with self.engine.connect() as conn:
                rows = files_store.all_files(conn)
            self._index = FileIndex((r.path, watch.Indexed(watch.Stat(r.mtime_ns, r.size), r.sha256, r.slug)) for r in rows)
        return self._index

    def has_published(self) -> bool:
        """Whether this store has ever recorded a file (a failure-only record does not count)."""
        return any(ix.stat.size != files_store.UNSEEN for ix in self.load_index().values())

    # -- recording ------------------------------------------------------

    def _record(self, conn: Connection, parsed: Parsed, now: dt.datetime, index: FileIndex) -> Recorded:
        """Store one read file (the index is not touched: the caller applies the result after commit)."""
        recorder = Recorder(conn, self.cfg.paths.briefs, index, now)
        recorded = recorder.record(parsed)
        recorder.flush()
        return recorded

    def _forget_file(self, conn: Connection, path: str, index: FileIndex, now: dt.datetime, touched: set[str]) -> str | None:
        """A file gone from the folder: its row dropped; the slug retired, if it was its story's."""
        return Recorder(conn, self.cfg.paths.briefs, index, now).forget_file(path, touched)

    def _failed(self, path: str, stat: watch.Stat | None, exc: BaseException | str, result: SyncResult) -> None:
        """One file could not be published: recorded as rejected, retried later with backoff."""
        message = exc if isinstance(exc, str) else failure_message(self.cfg.paths.briefs / path, exc)
        if self.retries.failed(path, stat, message):
            # A bug (not a failure we know) keeps its traceback in the log, once.
            log.error("%s (retried on a later scan)", message, exc_info=None if isinstance(exc, (str, *EXPECTED)) else exc)
        result.errors.append(message)
        index = self.load_index()
        known = index.get(path)
        try:
            with self._lock, self.engine.begin() as conn:
                files_store.record_failure(conn, path, message, now=self._now())
                if known is not None and known.slug:
                    stories.set_error(conn, known.slug, message)
            if known is None:
                # As the store now has it: a file never seen, so a deletion is noticed and clears the error.
                index[path] = watch.Indexed(watch.Stat(files_store.UNSEEN, files_store.UNSEEN), "", None)
        except Exception as exc:  # the store itself may be what is failing (a full disk): the log has it
            log.error("could not record the failure of %s: %s", path, exc)

    # -- outputs --------------------------------------------------------

    def _ping_hub(self, written: Sequence[str]) -> None:
        """WebSub publish pings for changed feeds; after the transaction, never fatal."""
        try:
            websub.ping_changed(self.cfg, written)
        except PublisherError as exc:  # a hub outage only delays readers
            log.warning("WebSub ping failed: %s", exc)

    def _story_outputs(self, conn: Connection, slug: str, now: dt.datetime, ready: RenderedIssue | None = None) -> list[str]:
        """Web issue files and the story's email issue, after its story row changed.

        The rows go first and the files last, both inside the caller's
        transaction: a failed write rolls the rows back with it. ``ready``
        is the render made before the lock was taken, used when it is of
        this very content.
        """
        row = stories.state(conn, slug)
        if row is None or row.deleted or row.status == "draft":
            if row is not None and row.status == "draft" and not row.deleted:
                self.issues.sync(conn, slug, now, draft=True)
            return remove_web_issue(self.cfg.paths.public, slug)
        brief = self.briefs.get(conn, slug)
        titles = stories.live_titles(conn, brief.related) if brief.related else {}
        # One render serves both the web version and the email issue.
        if ready is not None and ready.key == slug and ready.content_hash == render_hash(brief, self.cfg, titles):
            issue = ready
        else:
            issue = render_story(brief, self.cfg, related_titles=titles)
        self.issues.sync(conn, slug, now, draft=False, rendered=issue)
        return write_web_issue(brief, self.cfg, issue, titles)

    def _titles(self, brief: Brief) -> dict[str, str]:
        """Titles of the stories ``brief`` names as related (one small read, outside the lock)."""
        if not brief.related:
            return {}
        with self.engine.connect() as conn:
            return stories.live_titles(conn, brief.related)

    # -- the public API ---------------------------------------------------

    def _seen(self, paths: Iterable[str] | None, index: FileIndex) -> tuple[dict[str, watch.Stat], Mapping[str, watch.Indexed]]:
        """What is in the folder now (all of it, or the named files) and the index entries to compare with."""
        if paths is None:
            return self._scan(index), index
        wanted = sorted(set(paths))
        seen = watch.scan_named(self.cfg.paths.briefs, wanted, follow_symlinks=self.cfg.briefs.follow_symlinks)
        return seen, {p: index[p] for p in wanted if p in index}

    def _scan(self, index: FileIndex) -> dict[str, watch.Stat]:
        """The whole folder; files under a subfolder that cannot be listed keep their last state (unknown is not gone)."""
        blind: set[str] = set()
        seen = watch.scan(self.cfg.paths.briefs, follow_symlinks=self.cfg.briefs.follow_symlinks, blind=blind, tree=self.tree)
        return self._unlisted(seen, blind, index)

    def _unlisted(self, seen: dict[str, watch.Stat], blind: set[str], index: FileIndex) -> dict[str, watch.Stat]:
        """``seen`` with the files known under the ``blind`` subfolders (which could not be listed)."""
        for prefix in sorted(blind):
            if self.retries.failed(f"<folder {prefix}>", None, prefix):
                log.error("%s: cannot list this folder; its briefs stay as they were until it can be read", self.cfg.paths.briefs / prefix)
            for path, known in index.items():
                if path.startswith(prefix):
                    seen.setdefault(path, known.stat)
        for key in [k for k in self.retries.pending() if k.startswith("<folder ") and k[8:-1] not in blind]:
            self.retries.forget(key)
        return seen

    def _sync_file(self, path: str, stat: watch.Stat, index: FileIndex, result: SyncResult, touched: set[str], alone: bool = False) -> bool:
        """Read, parse, record and write one file in its own transaction; its failure is its own.
        ``alone`` (the sync's only file): its feeds and site pages too, in that transaction (True if so)."""
        parsed, brief = read_and_parse(self.cfg, path, stat)  # no lock held: other work goes on meanwhile
        if parsed.retry:
            self._failed(path, stat, parsed.error or "", result)
            return False
        known = index.get(path)
        unchanged = known is not None and known.sha256 == parsed.sha256 and parsed.error is None and known.slug == parsed.slug
        ready: RenderedIssue | None = None
        if brief is not None:
            self.briefs.remember(parsed.sha256, brief)
        if brief is not None and not unchanged:
            try:
                # Rendered before the lock too: the desk never waits for this file's render.
                ready = None if brief.is_draft else render_story(brief, self.cfg, related_titles=self._titles(brief))
            except Exception as exc:  # whatever one brief does, the others publish
                self._failed(path, stat, exc, result)
                return False
        if watch.scan_one(self.cfg.paths.briefs / path, follow_symlinks=self.cfg.briefs.follow_symlinks) != stat:
            result.waiting.append(path)  # changed while we read it: next scan
            return False
        now, handled, outputs, slugs = self._now(), False, False, []
        try:
            with self._lock, self.engine.begin() as conn:
                if known is not None and unchanged:
                    # Touched, not changed (e.g. `touch`, a save without edits).
                    files_store.touch(conn, path, mtime_ns=stat.mtime_ns, size=stat.size)
                    recorded = Recorded(watch.Indexed(stat, known.sha256, known.slug), None, frozenset(), None)
                else:
                    recorded = self._record(conn, parsed, now, index)
                    slugs = [s for s in (recorded.changed_slug, recorded.retired) if s]
                    for slug in slugs:
                        result.written += self._story_outputs(conn, slug, now, ready)
                    if alone and slugs:
                        handled = True
                        outputs = self.outputs.write_within(conn, {*recorded.touched, MAIN_FEED}, slugs, result)
        except Exception as exc:  # one file's failure, whatever it is, is that file's alone
            # The transaction rolled back; the file stays unseen and is read again later.
            if outputs:
                self.outputs.rolled_back({*recorded.touched, MAIN_FEED})
            self._failed(path, stat, exc, result)
            return False
        self.outputs.changed.update(slugs)  # the site's lists follow these stories (a retired slug too)
        if outputs:
            self.outputs.committed()
        index[path] = recorded.indexed
        if self.retries.succeeded(path):
            log.info("%s published after earlier failures", path)
        touched |= recorded.touched
        if recorded.error is not None:
            result.errors.append(recorded.error)
        if recorded.changed_slug is not None:
            result.published.append(recorded.changed_slug)
            log.info("published %s", recorded.changed_slug)
        return handled

    def _sync_removed(self, path: str, index: FileIndex, result: SyncResult, touched: set[str]) -> None:
        now = self._now()
        gone: set[str] = set()
        try:
            with self._lock, self.engine.begin() as conn:
                slug = self._forget_file(conn, path, index, now, gone)
                if slug is not None:
                    result.written += self._story_outputs(conn, slug, now)
        except Exception as exc:  # as in _sync_file
            self._failed(path, None, exc, result)
            return
        del index[path]
        self.retries.forget(path)
        touched |= gone
        if slug is not None:
            result.removed.append(slug)
            log.info("removed %s (%s deleted)", slug, path)

    def sync(self, paths: Iterable[str] | None = None) -> SyncResult:
        """One scan, plan and publish cycle; only what changed is read or written.

        ``paths`` (relative to the briefs folder) limits the scan to files a
        filesystem event named, so the cost follows the change, not the
        folder; None walks the whole folder. Each file is its own
        transaction: one that fails is recorded and retried, the rest publish.
        """
        with self._sync_lock:
            index = self.load_index()
            seen, subset = self._seen(paths, index)
            plan = watch.plan(subset, seen, now_ns=time.time_ns(), quiet=self.cfg.schedule.quiet_period)
            result = SyncResult(waiting=list(plan.waiting), retry_after=plan.retry_after)
            due = [p for p in plan.read if self.retries.due(p, seen[p])]
            result.retrying = sorted(set(plan.read) - set(due))
            touched: set[str] = set()
            # One changed file (an edit): its feeds and pages commit with its rows.
            alone = len(due) == 1 and not plan.removed
            done = any([self._sync_file(path, seen[path], index, result, touched, alone) for path in due])
            for path in plan.removed:
                self._sync_removed(path, index, result, touched)
            if result.published or result.removed:
                touched.add(MAIN_FEED)
            if not done:
                self.outputs.write_after(self.engine, touched, result)
            result.retrying = sorted(set(result.retrying) | {p for p in self.retries.pending() if p in seen})
            result.retry_after = _min(result.retry_after, self.retries.seconds_to_next())
            self._ping_hub(result.written)
            return result

    def warm(self) -> None:
        """Load now what the first edit of a fresh process would otherwise load: the main feed's kept
        entry parts, the site's lists from the store (each list page checked against the inputs kept
        for it, rewritten if they differ), the site templates compiled. Loading them made the first
        edit after a start cost 650 ms at 30k stories (66 ms after a warm-up; later edits about 40 ms).
        The service calls this after its first scan."""
        with self._sync_lock, self._lock, self.engine.begin() as conn:
            written = self.outputs.warm(conn)
        if written:
            log.info("site pages out of step with the store, written again: %s", ", ".join(written[:6]))

    def sweep(self, named: Iterable[str] = ()) -> SyncResult:
        """The safety net while file events work: :func:`watch.sweep`'s few files plus ``named`` (a full scan when it cannot tell)."""
        with self._sync_lock:
            paths = watch.sweep(self.cfg.paths.briefs, self.tree, list(self.load_index()))
            return self.sync(None if paths is None else {*paths, *named})

    def build_all(self, *, workers: int | None = None, first: FirstPass | None = None) -> SyncResult:
        """Render every brief now (no quiet period): web issues in parallel, then every feed.

        Workers isolate each file: a brief that fails to parse, render or
        write comes back as an error and the rest of the build goes on.
        ``first``: the build's first pass, begun by the caller (``publisher
        build`` begins it before it imports this module); else begun here.
        """
        n_workers = count_workers(workers)
        with self._sync_lock, fewer_collections():
            index = self.load_index()
            first = first or FirstPass(self.cfg, n_workers)
            try:
                seen = self._unlisted(first.seen, first.blind, index)
                self.tree, first.seen = first.tree, {}
                gone = [p for p in index if p not in seen]
                del seen  # map_chunks lets go of each chunk once its results are in (100k briefs: ~30 MB)
                # Pages name related stories by title: every title first (from the briefs'
                # heads), so the workers render each page once, with them.
                ahead = first.titles()
            finally:
                first.close()
            set_titles_ahead(ahead)
            # Forked now, with the titles, before anything is recorded (WorkerPool).
            chunks = first.chunks
            pool = WorkerPool(self.cfg, n_workers) if n_workers > 1 and len(chunks) > 1 else None
            try:
                return self._build_rest(chunks, pool, index, self._now(), gone, n_workers, ahead, SyncResult())
            finally:
                if pool is not None:
                    pool.close()

    def _build_rest(self, chunks: list[list[tuple[str, watch.Stat]]], pool: WorkerPool | None, index: FileIndex,
                    now: dt.datetime, gone: list[str], n_workers: int, ahead: dict[str, str], result: SyncResult) -> SyncResult:
        """:meth:`build_all` from its main pass on, in ``pool``'s workers (None: in this process)."""
        touched: set[str] = {MAIN_FEED}
        failed: list[Parsed] = []
        # Stories naming related ones: slug → the related slugs, one string
        # rather than a tuple of them (100k briefs: ~20 MB less).
        linked: dict[str, str] = {}
        lost: set[str] = set()  # slugs a file claimed that another file publishes
        try:
            for parsed_chunk in map_chunks(self.cfg, build_chunk, chunks, n_workers, pool):
                linked.update(
                    (p.slug, "\n".join(p.related)) for p in parsed_chunk if p.related and p.slug and not p.error and p.status != "draft"
                )
                # One short transaction per chunk, the lock only around it: the
                # desk is never kept waiting for the workers' parsing and rendering.
                failed += [p for p in parsed_chunk if p.retry]
                result.written += [f for p in parsed_chunk if not p.retry for f in p.written]
                self._record_chunk([p for p in parsed_chunk if not p.retry], index, now, result, touched, lost)
        finally:
            set_titles_ahead({})
        if pool is not None:  # one is enough for what follows (the tail's head start, few pages again)
            pool.keep_one()  # the others' pages go before the parent's state grows to the build's peak
        listing = headstart.start(self, touched, pool)  # what it is not given, the tail renders
        try:
            with self._lock, self.engine.begin() as conn:
                removed = {path: self._forget_file(conn, path, index, now, touched) for path in gone}
                # Every tag any live story has, so a deleted public/ is rebuilt whole.
                touched |= stories.live_feed_tags(conn)
                self.digests.rewrite_pages(conn)
                # Only a slug some file publishes (or lost to another) can have a live title.
                named = {slug for names in linked.values() for slug in names.split("\n") if index.holders(slug)} | lost
                titles = stories.live_titles(conn, named) if named else {}
            jobs = pages_again(self.cfg, linked, ahead, titles, lost, index, result)
            del linked, ahead
            # After the head start, in the same worker; a file changed since the build read it, from the store.
            related.write_pages_again(self.cfg, jobs, n_workers, pool, self.engine, self.briefs, index, result)
            if pool is not None:
                pool.release()  # the worker exits once done: its pages go before the tail's peak
            for path, slug in removed.items():
                del index[path]
                if slug is not None:
                    result.removed.append(slug)
                    remove_web_issue(self.cfg.paths.public, slug)
            for parsed in failed:
                self._failed(parsed.path, parsed.stat, parsed.error or "", result)
            self.outputs.write_after(self.engine, touched, result, force=True)
        finally:
            if listing is not None and not listing.done() and pool is not None:
                pool.close(kill=True)  # only a head start: the tail had no miss, or failed
            headstart.stop(self)
        self._ping_hub(result.written)
        log.info("build: %d published, %d rejected, %d removed", len(result.published), len(result.errors), len(result.removed))
        return result

    def _record_chunk(self, chunk: Sequence[Parsed], index: FileIndex, now: dt.datetime,
                      result: SyncResult, touched: set[str], lost: set[str]) -> None:
        recorded: list[tuple[Parsed, Recorded]] = []
        try:
            with self._lock, self.engine.begin() as conn:
                recorder = Recorder(conn, self.cfg.paths.briefs, index, now)
                before = (index.get(p.path) for p in chunk)
                recorder.prefetch([*(p.slug for p in chunk if p.slug), *(b.slug for b in before if b is not None and b.slug)])
                for parsed in chunk:
                    rec = recorder.record(parsed)
                    # Later files of the chunk must see this one's slug (duplicate-slug check).
                    index[parsed.path] = rec.indexed
                    recorded.append((parsed, rec))
                recorder.flush()
        except BaseException:
            self._index = None  # rolled back: what the store holds is the truth again
            raise
        # Reached only after the commit; a rollback raised above, and the store reloads the index.
        for parsed, rec in recorded:
            touched |= rec.touched
            if rec.lost is not None:
                lost.add(rec.lost)
            if rec.error is not None:
                result.errors.append(rec.error)
            elif parsed.slug:
                result.published.append(parsed.slug)

    # -- editors' actions, previews and digests (the desk's DeskActions) ---

    def approve(self, target: str, *, actor: str = "service", send_at: dt.datetime | None = None) -> Released:
        return self.issues.approve(target, actor=actor, send_at=send_at)

    def hold(self, target: str, *, actor: str = "service") -> None:
        self.issues.hold(target, actor=actor)

    def preview_story(self, slug: str) -> RenderedIssue:
        return self.issues.preview(slug)

    def story_brief(self, slug: str) -> Brief:
        with self.engine.connect() as conn:
            return self.briefs.get(conn, slug)

    def next_digest(self, cadence: str | None = None) -> tuple[DigestSchedule, dt.datetime, list[Brief], dt.datetime | None]:
        return self.digests.upcoming(cadence)

    def render_digest(self, schedule: DigestSchedule, fire: dt.datetime, briefs: list[Brief]) -> RenderedIssue:
        return self.digests.render(schedule, fire, briefs)

    def next_digest_time(self) -> dt.datetime | None:
        return self.digests.next_fire()

    def run_digest(self, cadence: str = Cadence.DAILY) -> int | None:
        return self.digests.run(cadence)

    def make_digest(self, fire: dt.datetime, cadence: str = Cadence.DAILY) -> int | None:
        return self.digests.make(self.digests.schedule(cadence), fire)

    def make_digest_now(self, cadence: str, *, actor: str) -> int | None:
        return self.digests.make_now(cadence, actor=actor)

    def catch_up_digest(self) -> list[int]:
        return self.digests.catch_up()

    # -- status -----------------------------------------------------------

    def status(self) -> Status:
        with self.engine.connect() as conn:
            rows = stories.listing(conn)
            errors = files_store.recent_errors(conn)
        states: dict[str, int] = {}
        awaiting = []
        for r in rows:
            states[r.state] = states.get(r.state, 0) + 1
            if r.issue_state is IssueState.AWAITING_APPROVAL and not r.deleted:
                awaiting.append((r.slug, r.title))
        return Status(states, sorted(awaiting), errors, self.next_digest_time(), len(rows))
