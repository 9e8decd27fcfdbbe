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
import hashlib
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..briefs.model import Brief
from ..briefs.parse import parse_brief
from ..briefs.slugs import tag_slug
from ..core.clock import Clock, system_clock
from ..core.config import Config
from ..core.errors import BriefError, PublisherError
from ..core.states import Cadence, IssueState
from ..render.email import RenderedIssue, render_story, web_version
from ..store import files as files_store
from ..store import stories
from ..store.engine import Connection, Engine
from . import watch, websub
from .briefcache import BriefCache
from .digests import Digests, DigestSchedule
from .feedfiles import MAIN_FEED, FeedWriter
from .issues import Released, StoryIssues
from .outputs import remove, write_atomic
from .sitepages import SiteWriter, write_story_page

log = logging.getLogger(__name__)


def feed_tags(brief: Brief) -> tuple[str, ...]:
    """Tag-feed keys of a story: its tags and entities, as path-safe slugs."""
    seen: dict[str, None] = {}
    for name in (*brief.tags, *brief.entities):
        key = tag_slug(name)
        if key:
            seen.setdefault(key, None)
    return tuple(seen)


@dataclass(frozen=True)
class Parsed:
    """One file read and parsed: all the pipeline needs, small enough to pass between processes."""

    path: str
    stat: watch.Stat
    sha256: str
    error: str | None
    slug: str | None = None
    title: str = ""
    status: str = "published"
    published_at: dt.datetime | None = None
    updated: dt.datetime | None = None  # front matter 'updated'
    tags: tuple[str, ...] = ()
    source: bytes = b""
    related: tuple[str, ...] = ()  # its story page is rewritten once related titles are known


@dataclass
class SyncResult:
    published: list[str] = field(default_factory=list)  # slugs new or changed
    removed: list[str] = field(default_factory=list)  # slugs gone from the folder
    errors: list[str] = field(default_factory=list)  # "path:line: message"
    waiting: list[str] = field(default_factory=list)  # paths still being written
    written: list[str] = field(default_factory=list)  # public files rewritten
    retry_after: float | None = None

    @property
    def changed(self) -> bool:
        return bool(self.published or self.removed or self.errors)


@dataclass(frozen=True)
class Status:
    states: dict[str, int]
    awaiting: list[tuple[str, str]]  # (slug, title)
    errors: list[tuple[str, str]]  # (path, error)
    next_digest: dt.datetime | None
    stories: int


def _read_and_parse(folder: Path, path: str, stat: watch.Stat, base_url: str, tz: dt.tzinfo) -> tuple[Parsed, Brief | None]:
    full = folder / path
    try:
        data = full.read_bytes()
    except OSError as exc:
        return Parsed(path, stat, "", f"{full}: unreadable: {exc.strerror or exc}"), None
    sha = hashlib.sha256(data).hexdigest()
    try:
        brief = parse_brief(data, str(full), base_url=base_url)
    except BriefError as exc:
        return Parsed(path, stat, sha, str(exc)), None
    return (
        Parsed(
            path, stat, sha, None, brief.slug, brief.title, brief.status, brief.published_at(tz),
            brief.updated, feed_tags(brief), data, brief.related,
        ),
        brief,
    )


# -- the process-pool side of a full build ------------------------------------

_worker_cfg: Config | None = None


def _init_worker(cfg: Config) -> None:
    global _worker_cfg
    _worker_cfg = cfg


def _build_chunk(paths: Sequence[tuple[str, watch.Stat]]) -> list[Parsed]:
    cfg = _worker_cfg
    assert cfg is not None
    out: list[Parsed] = []
    for path, stat in paths:
        parsed, brief = _read_and_parse(cfg.paths.briefs, path, stat, cfg.site.base_url, cfg.site.tz)
        if brief is not None and not brief.is_draft:
            write_web_issue(brief, cfg)
        out.append(parsed)
    return out


def write_web_issue(brief: Brief, cfg: Config, issue: RenderedIssue | None = None, related_titles: dict[str, str] | None = None) -> list[str]:
    """public/issues/<slug>.html, the story's web page (what the email's "view in
    browser" opens, without the email's footer), and .txt, the email's text."""
    written = write_story_page(brief, cfg, related_titles)
    _html, text = web_version(issue or render_story(brief, cfg, related_titles=related_titles), cfg)
    if write_atomic(cfg.paths.public / "issues" / f"{brief.slug}.txt", text.encode("utf-8")):
        written.append(f"issues/{brief.slug}.txt")
    return written


def _remove_web_issue(cfg: Config, slug: str) -> list[str]:
    return [f"issues/{slug}{suffix}" for suffix in (".html", ".txt") if remove(cfg.paths.public / "issues" / f"{slug}{suffix}")]


class Pipeline:
    """One per process; every public method is safe to call from any thread."""

    def __init__(self, cfg: Config, engine: Engine, *, clock: Clock = system_clock) -> None:
        self.cfg = cfg
        self.engine = engine
        self.clock = clock
        self._lock = threading.RLock()
        self._index: dict[str, watch.Indexed] | None = None
        self.briefs = BriefCache(cfg)
        self.feeds = FeedWriter(cfg, self.briefs)
        self.site = SiteWriter(cfg, self.briefs)
        self.issues = StoryIssues(cfg, engine, self.briefs, clock, self._lock)
        self.digests = Digests(cfg, engine, self.briefs, clock, self._lock)

    def _now(self) -> dt.datetime:
        return self.clock().astimezone(dt.timezone.utc)

    def load_index(self) -> dict[str, watch.Indexed]:
        """What the store knows of the briefs folder (read once, then kept in step)."""
        if self._index is None:
            with self.engine.connect() as conn:
                rows = files_store.all_files(conn)
            self._index = {r.path: watch.Indexed(watch.Stat(r.mtime_ns, r.size), r.sha256, r.slug) for r in rows}
        return self._index

    # -- recording ------------------------------------------------------

    def _slug_owner(self, parsed: Parsed, index: dict[str, watch.Indexed]) -> str | None:
        """Another file that already publishes this slug, if any."""
        return next(
            (p for p, ix in index.items() if ix.slug == parsed.slug and p != parsed.path and (self.cfg.paths.briefs / p).exists()),
            None,
        )

    def _record_story(self, conn: Connection, parsed: Parsed, now: dt.datetime) -> tuple[bool, set[str]]:
        """Store a good parse as its story; (whether the story changed, tag keys it had before)."""
        assert parsed.slug is not None and parsed.published_at is not None
        record = stories.StoryRecord(
            parsed.slug, parsed.path, parsed.title, parsed.status, parsed.source, parsed.sha256, parsed.published_at, parsed.tags
        )
        row = stories.state(conn, parsed.slug)
        if row is None:
            # First sight: the story is as new as its date says, so a build
            # from a fresh store gives the same bytes as from an old one.
            stories.insert(conn, record, updated_at=parsed.updated or parsed.published_at, now=now)
            return True, set()
        if row.content_hash != parsed.sha256 or row.deleted or row.path != parsed.path:
            edited = row.content_hash != parsed.sha256 or parsed.updated is not None
            stories.update(conn, record, updated_at=(parsed.updated or now) if edited else None)
            return True, set(row.feed_tags)
        stories.set_error(conn, parsed.slug, None)
        return False, set()

    def _record(self, conn: Connection, parsed: Parsed, now: dt.datetime, index: dict[str, watch.Indexed]) -> tuple[str | None, set[str], str | None]:
        """Store one read file. Returns (slug whose story changed, tag keys touched, error)."""
        previous = index.get(parsed.path)
        touched: set[str] = set()
        changed_slug: str | None = None
        slug, error = parsed.slug, parsed.error
        if error is None and slug is not None:
            owner = self._slug_owner(parsed, index)
            if owner is not None:
                error = f"{self.cfg.paths.briefs / parsed.path}: slug {slug!r} is already used by {owner}"
                slug = None
        if error is not None:
            log.warning("rejected %s", error)
            if previous is not None and previous.slug:
                stories.set_error(conn, previous.slug, error)
        else:
            assert slug is not None
            changed, before = self._record_story(conn, parsed, now)
            changed_slug = slug if changed else None
            touched |= before | set(parsed.tags)
            # An edit that changed the slug leaves the old story behind: retire it.
            if previous is not None and previous.slug and previous.slug != slug:
                self._retire(conn, previous.slug, parsed.path, now, touched)
        new = watch.Indexed(parsed.stat, parsed.sha256, slug if error is None else (previous.slug if previous else None))
        files_store.save(
            conn, files_store.FileRow(parsed.path, parsed.stat.mtime_ns, parsed.stat.size, parsed.sha256, new.slug),
            error=error, now=now, known=previous is not None,
        )
        index[parsed.path] = new
        return changed_slug, touched, error

    def _retire(self, conn: Connection, slug: str, path: str, now: dt.datetime, touched: set[str]) -> bool:
        row = stories.state(conn, slug)
        if row is None or row.deleted or row.path != path:
            return False
        stories.retire(conn, slug, now=now)
        touched |= row.feed_tags
        return True

    def _forget_file(self, conn: Connection, path: str, index: dict[str, watch.Indexed], now: dt.datetime, touched: set[str]) -> str | None:
        """A file gone from the folder: drop it from the index; the slug retired, if it was its story's."""
        gone = index.pop(path)
        files_store.forget(conn, path)
        if gone.slug and self._retire(conn, gone.slug, path, now, touched):
            return gone.slug
        return None

    # -- outputs --------------------------------------------------------

    def _ping_hub(self, written: Sequence[str]) -> None:
        """WebSub publish pings for changed feeds; after the transaction, never fatal."""
        try:
            websub.ping_changed(self.cfg, written)
        except PublisherError as exc:  # a hub outage only delays readers
            log.warning("WebSub ping failed: %s", exc)

    def _story_outputs(self, conn: Connection, slug: str, now: dt.datetime) -> list[str]:
        """Web issue files and the story's email issue, after its story row changed."""
        row = stories.state(conn, slug)
        if row is None or row.deleted or row.status == "draft":
            if row is not None and row.status == "draft" and not row.deleted:
                self.issues.sync(conn, slug, now, draft=True)
            return _remove_web_issue(self.cfg, slug)
        brief = self.briefs.get(conn, slug)
        titles = stories.live_titles(conn, brief.related) if brief.related else {}
        # One render serves both the web version and the email issue.
        issue = render_story(brief, self.cfg, related_titles=titles)
        written = write_web_issue(brief, self.cfg, issue, titles)
        self.issues.sync(conn, slug, now, draft=False, rendered=issue)
        return written

    # -- the public API ---------------------------------------------------

    def _seen(self, paths: Iterable[str] | None, index: dict[str, watch.Indexed]) -> tuple[dict[str, watch.Stat], dict[str, watch.Indexed]]:
        """What is in the folder now (all of it, or the named files) and the index entries to compare with."""
        if paths is None:
            return watch.scan(self.cfg.paths.briefs), index
        wanted = sorted(set(paths))
        seen = {p: st for p in wanted if watch.is_watched(Path(p).name) and (st := watch.scan_one(self.cfg.paths.briefs / p))}
        return seen, {p: index[p] for p in wanted if p in index}

    def _read_planned(self, conn: Connection, plan: watch.Plan, seen: dict[str, watch.Stat], index: dict[str, watch.Indexed],
                      now: dt.datetime, result: SyncResult) -> tuple[set[str], set[str]]:
        """Read, parse and record each planned file; (slugs changed, tag keys touched)."""
        changed: set[str] = set()
        touched: set[str] = set()
        for path in plan.read:
            parsed, brief = _read_and_parse(self.cfg.paths.briefs, path, seen[path], self.cfg.site.base_url, self.cfg.site.tz)
            if brief is not None:
                self.briefs.remember(parsed.sha256, brief)
            if watch.scan_one(self.cfg.paths.briefs / path) != seen[path]:
                result.waiting.append(path)  # changed while we read it: next scan
                continue
            known = index.get(path)
            if known is not None and known.sha256 == parsed.sha256 and parsed.error is None and known.slug == parsed.slug:
                # Touched, not changed (e.g. `touch`, a save without edits).
                files_store.touch(conn, path, mtime_ns=parsed.stat.mtime_ns, size=parsed.stat.size)
                index[path] = watch.Indexed(parsed.stat, known.sha256, known.slug)
                continue
            slug, tags, error = self._record(conn, parsed, now, index)
            touched |= tags
            if error is not None:
                result.errors.append(error)
            if slug is not None:
                changed.add(slug)
                result.published.append(slug)
        return changed, touched

    def sync(self, paths: Iterable[str] | None = None) -> SyncResult:
        """One scan, plan and publish cycle; only what changed is read or written.

        ``paths`` (relative to the briefs folder) limits the scan to files a
        filesystem event named, so the cost follows the change, not the
        folder; None walks the whole folder.
        """
        with self._lock:
            index = self.load_index()
            seen, subset = self._seen(paths, index)
            plan = watch.plan(subset, seen, now_ns=time.time_ns(), quiet=self.cfg.schedule.quiet_period)
            result = SyncResult(waiting=list(plan.waiting), retry_after=plan.retry_after)
            if not plan.read and not plan.removed:
                return result
            now = self._now()
            with self.engine.begin() as conn:
                changed, touched = self._read_planned(conn, plan, seen, index, now, result)
                for path in plan.removed:
                    slug = self._forget_file(conn, path, index, now, touched)
                    if slug is not None:
                        changed.add(slug)
                        result.removed.append(slug)
                        log.info("removed %s (%s deleted)", slug, path)
                for slug in sorted(changed):
                    result.written += self._story_outputs(conn, slug, now)
                    if slug in result.published:
                        log.info("published %s", slug)
                if changed:
                    result.written += self.feeds.write(conn, {MAIN_FEED, *touched})
                    result.written += self.site.write(conn, touched)
            self._ping_hub(result.written)
            return result

    def build_all(self, *, workers: int | None = None) -> SyncResult:
        """Render every brief now (no quiet period): web issues in parallel, then every feed."""
        with self._lock:
            index = self.load_index()
            seen = watch.scan(self.cfg.paths.briefs)
            result = SyncResult()
            now = self._now()
            items = sorted(seen.items())
            n_workers = workers or min(os.cpu_count() or 1, 8)
            chunk = max(1, min(200, len(items) // (n_workers * 4) or 1))
            chunks = [items[i : i + chunk] for i in range(0, len(items), chunk)]
            touched: set[str] = {MAIN_FEED}
            linked: list[Parsed] = []
            with self.engine.begin() as conn:
                for parsed_chunk in self._map_chunks(chunks, n_workers):
                    for parsed in parsed_chunk:
                        if parsed.related and parsed.error is None:
                            linked.append(parsed)
                        _slug, tags, error = self._record(conn, parsed, now, index)
                        touched |= tags
                        if error is not None:
                            result.errors.append(error)
                        elif parsed.slug:
                            result.published.append(parsed.slug)
                for path in [p for p in index if p not in seen]:
                    slug = self._forget_file(conn, path, index, now, touched)
                    if slug is not None:
                        result.removed.append(slug)
                        _remove_web_issue(self.cfg, slug)
                # Every tag any live story has, so a deleted public/ is rebuilt whole.
                touched |= stories.live_feed_tags(conn)
                self.digests.rewrite_pages(conn)
                result.written += self.feeds.write(conn, touched, force=True)
                # Workers cannot see the store: pages with related stories get their titles now.
                for slug in sorted({p.slug for p in linked if p.slug and p.status != "draft"}):
                    result.written += self.site.story(conn, self.briefs.get(conn, slug))
                result.written += self.site.write(conn, touched)
            self._ping_hub(result.written)
            log.info("build: %d published, %d rejected, %d removed", len(result.published), len(result.errors), len(result.removed))
            return result

    def _map_chunks(self, chunks: list[list[tuple[str, watch.Stat]]], n_workers: int) -> Iterator[list[Parsed]]:
        if n_workers <= 1 or len(chunks) <= 1:
            _init_worker(self.cfg)
            for c in chunks:
                yield _build_chunk(c)
            return
        # fork: workers inherit the imported modules and compiled templates.
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=_init_worker, initargs=(self.cfg,)) as pool:
            yield from pool.map(_build_chunk, chunks)

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
