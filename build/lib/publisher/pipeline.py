"""The service core: from the briefs folder to stored stories, public files and issues.

:class:`Publisher` carries out what :func:`publisher.watch.plan` decides:
read and parse changed files, record stories in the store (the last good
version stays when an edit breaks a brief), write web issues and the feeds
whose contents changed, and keep one email issue per story in step with it
(until it is being sent: an edit never re-sends). It also makes digests.

Work is proportional to what changed: feeds are re-rendered only for the
tags a changed story had or has, from the store's newest-N query, parsing
only those stories (with a cache).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import multiprocessing
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from . import __version__, store, watch
from .briefs import parse_brief, tag_slug
from .clock import Clock, system_clock
from .config import Config
from .errors import BriefError, NotFound, PublisherError, StateError
from .model import Brief
from .outputs import remove, write_atomic

if TYPE_CHECKING:
    from .newsletter import RenderedIssue

log = logging.getLogger(__name__)

MAIN_FEED = ""  # the tag key of the site-wide feed
FEED_NAMES = ("feed.atom", "feed.rss", "feed.json")
ISSUE_OPEN_STATES = ("draft", "awaiting_approval", "approved", "held", "error")


def feed_tags(brief: Brief) -> tuple[str, ...]:
    """Tag-feed keys of a story: its tags and entities, as path-safe slugs."""
    seen: dict[str, None] = {}
    for name in (*brief.tags, *brief.entities):
        key = tag_slug(name)
        if key:
            seen.setdefault(key, None)
    return tuple(seen)


def _frame(tags: Iterable[str]) -> str:
    tags = list(tags)
    return "\n" + "\n".join(tags) + "\n" if tags else ""


def _unframe(text: str) -> set[str]:
    return {t for t in text.split("\n") if t}


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


BuildResult = SyncResult


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
            brief.updated, feed_tags(brief), data,
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


def write_web_issue(brief: Brief, cfg: Config, issue: RenderedIssue | None = None) -> list[str]:
    """public/issues/<slug>.html and .txt: the page the email's "view in browser" opens."""
    from .newsletter import render_story, web_version

    html, text = web_version(issue or render_story(brief, cfg), cfg)
    written = []
    base = cfg.paths.public / "issues"
    for suffix, content in ((".html", html), (".txt", text)):
        if write_atomic(base / f"{brief.slug}{suffix}", content.encode("utf-8")):
            written.append(f"issues/{brief.slug}{suffix}")
    return written


class Publisher:
    """One per process; every public method is safe to call from any thread."""

    def __init__(self, cfg: Config, engine: Engine, *, clock: Clock = system_clock) -> None:
        self.cfg = cfg
        self.engine = engine
        self.clock = clock
        self._lock = threading.RLock()
        self._index: dict[str, watch.Indexed] | None = None
        self._briefs: OrderedDict[str, Brief] = OrderedDict()  # content hash → parsed brief
        self._feed_settings = repr((cfg.site, cfg.feeds, __version__))

    # -- helpers --------------------------------------------------------

    def _now(self) -> dt.datetime:
        return self.clock().astimezone(dt.timezone.utc)

    def _load_index(self) -> dict[str, watch.Indexed]:
        if self._index is None:
            f = store.files
            with self.engine.connect() as conn:
                rows = conn.execute(sa.select(f.c.path, f.c.mtime_ns, f.c.size, f.c.sha256, f.c.slug)).all()
            self._index = {r.path: watch.Indexed(watch.Stat(r.mtime_ns, r.size), r.sha256, r.slug) for r in rows}
        return self._index

    def _remember(self, content_hash: str, brief: Brief) -> Brief:
        self._briefs[content_hash] = brief
        self._briefs.move_to_end(content_hash)
        while len(self._briefs) > 4096:
            self._briefs.popitem(last=False)
        return brief

    def _stored_brief(self, conn: sa.Connection, slug: str, path: str, content_hash: str) -> Brief:
        """A stored story as a Brief; its source (the big column) is read only on a cache miss."""
        hit = self._briefs.get(content_hash)
        if hit is not None:
            self._briefs.move_to_end(content_hash)
            return hit
        source = conn.execute(sa.select(store.stories.c.source).where(store.stories.c.slug == slug)).scalar_one()
        brief = parse_brief(bytes(source), str(self.cfg.paths.briefs / path), base_url=self.cfg.site.base_url)
        return self._remember(content_hash, brief)

    def _story_brief(self, conn: sa.Connection, slug: str) -> Brief:
        s = store.stories
        row = conn.execute(sa.select(s.c.path, s.c.content_hash).where(s.c.slug == slug)).first()
        if row is None:
            raise NotFound("story", slug)
        return self._stored_brief(conn, slug, row.path, row.content_hash)

    # -- recording ------------------------------------------------------

    def _record(self, conn: sa.Connection, parsed: Parsed, now: dt.datetime, index: dict[str, watch.Indexed]) -> tuple[str | None, set[str], str | None]:
        """Store one read file. Returns (slug whose story changed, tag keys touched, error)."""
        f, s = store.files, store.stories
        previous = index.get(parsed.path)
        touched: set[str] = set()
        changed_slug: str | None = None
        slug = parsed.slug
        error = parsed.error
        if error is None and slug is not None:
            owner = next(
                (p for p, ix in index.items() if ix.slug == slug and p != parsed.path and (self.cfg.paths.briefs / p).exists()),
                None,
            )
            if owner is not None:
                error = f"{self.cfg.paths.briefs / parsed.path}: slug {slug!r} is already used by {owner}"
                slug = None
        if error is not None:
            log.warning("rejected %s", error)
            keep_slug = previous.slug if previous else None
            if keep_slug:
                conn.execute(sa.update(s).where(s.c.slug == keep_slug).values(error=error))
        else:
            assert slug is not None and parsed.published_at is not None
            row = conn.execute(sa.select(s.c.content_hash, s.c.feed_tags, s.c.deleted_at, s.c.path).where(s.c.slug == slug)).first()
            values: dict[str, Any] = dict(
                path=parsed.path, title=parsed.title, status=parsed.status, source=parsed.source,
                content_hash=parsed.sha256, published_at=parsed.published_at.astimezone(dt.timezone.utc),
                deleted_at=None, error=None, feed_tags=_frame(parsed.tags),
            )
            updated = (parsed.updated or now).astimezone(dt.timezone.utc)
            if row is None:
                # First sight: the story is as new as its date says, so a build
                # from a fresh store gives the same bytes as from an old one.
                first = (parsed.updated or parsed.published_at).astimezone(dt.timezone.utc)
                conn.execute(sa.insert(s).values(slug=slug, updated_at=first, created_at=now, **values))
                changed_slug = slug
            elif row.content_hash != parsed.sha256 or row.deleted_at is not None or row.path != parsed.path:
                if row.content_hash != parsed.sha256:
                    values["updated_at"] = updated
                elif parsed.updated is not None:
                    values["updated_at"] = updated
                conn.execute(sa.update(s).where(s.c.slug == slug).values(**values))
                touched |= _unframe(row.feed_tags)
                changed_slug = slug
            else:
                conn.execute(sa.update(s).where(s.c.slug == slug).values(error=None))
            touched |= set(parsed.tags)
            # An edit that changed the slug leaves the old story behind: retire it.
            if previous is not None and previous.slug and previous.slug != slug:
                self._retire(conn, previous.slug, parsed.path, now, touched)
        new = watch.Indexed(parsed.stat, parsed.sha256, slug if error is None else (previous.slug if previous else None))
        file_values = dict(
            mtime_ns=parsed.stat.mtime_ns, size=parsed.stat.size, sha256=parsed.sha256, slug=new.slug,
            error=error, seen_at=now,
        )
        if previous is None:
            conn.execute(sa.insert(f).values(path=parsed.path, **file_values))
        else:
            conn.execute(sa.update(f).where(f.c.path == parsed.path).values(**file_values))
        index[parsed.path] = new
        return changed_slug, touched, error

    def _retire(self, conn: sa.Connection, slug: str, path: str, now: dt.datetime, touched: set[str]) -> bool:
        s = store.stories
        row = conn.execute(sa.select(s.c.path, s.c.feed_tags, s.c.deleted_at).where(s.c.slug == slug)).first()
        if row is None or row.deleted_at is not None or row.path != path:
            return False
        conn.execute(sa.update(s).where(s.c.slug == slug).values(deleted_at=now))
        touched |= _unframe(row.feed_tags)
        return True

    # -- outputs --------------------------------------------------------

    def _newest(self, conn: sa.Connection, tag: str) -> list[Any]:
        """The feed's newest stories, without their sources (the big column).

        With RFC 5005 archives the main feed needs every story (the feeds
        module pages the older ones), so a change re-renders the archive too.
        """
        s = store.stories
        query = (
            sa.select(s.c.slug, s.c.path, s.c.content_hash, s.c.published_at, s.c.updated_at)
            .where(s.c.status == "published", s.c.deleted_at.is_(None))
            .order_by(s.c.published_at.desc(), s.c.slug.desc())
        )
        if not (tag == MAIN_FEED and self.cfg.feeds.archive):
            query = query.limit(self.cfg.feeds.size)
        if tag != MAIN_FEED:
            query = query.where(s.c.feed_tags.contains(f"\n{tag}\n", autoescape=True))
        return list(conn.execute(query).all())

    def _write_feeds(self, conn: sa.Connection, tags: Iterable[str], *, force: bool = False) -> list[str]:
        from .feeds import FeedStory, render_feeds

        written: list[str] = []
        feed_stories: dict[str, Any] = {}
        for tag in sorted(set(tags)):
            if tag != MAIN_FEED and not self.cfg.feeds.tag_feeds:
                continue
            prefix = "" if tag == MAIN_FEED else f"tags/{tag}/"
            folder = self.cfg.paths.public / prefix
            rows = self._newest(conn, tag)
            if not rows and tag != MAIN_FEED:
                for name in FEED_NAMES:
                    if remove(folder / name):
                        written.append(prefix + name)
                conn.execute(sa.delete(store.kv).where(store.kv.c.key == f"feed.members:{tag}"))
                continue
            # An edit to a story outside this feed's newest N changes nothing
            # in it: skip the render (this is most of an incremental build).
            # The digest of what each feed was rendered from is kept in the
            # store, so a fresh process skips untouched feeds too.
            # The settings that shape a feed are part of the digest; a full
            # build (force) renders everything, so template edits show too.
            members = hashlib.sha256(
                repr((self._feed_settings, [(r.slug, r.content_hash, store.aware(r.updated_at).isoformat()) for r in rows])).encode()
            ).hexdigest()
            kv_key = f"feed.members:{tag}"
            if not force and store.get_kv(conn, kv_key) == members and all((folder / name).exists() for name in FEED_NAMES):
                continue
            stories = []
            for r in rows:
                # One FeedStory per slug across all feeds of this pass, so entry HTML is rendered once.
                if r.slug not in feed_stories:
                    feed_stories[r.slug] = FeedStory(
                        self._stored_brief(conn, r.slug, r.path, r.content_hash),
                        store.aware(r.published_at),
                        store.aware(r.updated_at),
                    )
                stories.append(feed_stories[r.slug])
            for rel, data in render_feeds(stories, self.cfg, only={tag}).items():
                keep = not rel.startswith("tags/") if tag == MAIN_FEED else rel.startswith(prefix)
                if keep and write_atomic(self.cfg.paths.public / rel, data):
                    written.append(rel)
            store.set_kv(conn, kv_key, members)
        if written:
            log.info("feeds written: %s", ", ".join(written[:6]) + (" …" if len(written) > 6 else ""))
        return written

    def _ping_hub(self, written: Sequence[str]) -> None:
        """WebSub publish pings for changed feeds; after the transaction, never fatal."""
        from . import websub

        try:
            websub.ping_changed(self.cfg, written)
        except PublisherError as exc:  # a hub outage only delays readers
            log.warning("WebSub ping failed: %s", exc)

    def _story_outputs(self, conn: sa.Connection, slug: str, now: dt.datetime, *, make_issue: bool) -> list[str]:
        """Web issue files and the story's email issue, after its story row changed."""
        s = store.stories
        row = conn.execute(sa.select(s.c.status, s.c.deleted_at).where(s.c.slug == slug)).first()
        issue_files = [self.cfg.paths.public / "issues" / f"{slug}{suffix}" for suffix in (".html", ".txt")]
        if row is None or row.deleted_at is not None or row.status == "draft":
            removed = [f"issues/{p.name}" for p in issue_files if remove(p)]
            if row is not None and row.status == "draft" and row.deleted_at is None and make_issue:
                self._upsert_issue(conn, slug, now, draft=True)
            return removed
        from .newsletter import render_story

        brief = self._story_brief(conn, slug)
        # One render serves both the web version and the email issue.
        issue = render_story(brief, self.cfg)
        written = write_web_issue(brief, self.cfg, issue)
        if make_issue:
            self._upsert_issue(conn, slug, now, draft=False, issue=issue)
        return written

    def _upsert_issue(
        self, conn: sa.Connection, slug: str, now: dt.datetime, *, draft: bool, issue: RenderedIssue | None = None
    ) -> None:
        from .newsletter import render_story

        i = store.issues
        row = conn.execute(sa.select(i.c.id, i.c.state, i.c.content_hash).where(i.c.kind == "story", i.c.key == slug)).first()
        if row is not None and row.state not in ISSUE_OPEN_STATES:
            log.info("story %s changed after its issue was %s: not re-sent", slug, row.state)
            return
        if issue is None:
            issue = render_story(self._story_brief(conn, slug), self.cfg)
        values = dict(
            subject=issue.subject, preheader=issue.preheader, html=issue.html, text=issue.text,
            content_hash=issue.content_hash, updated_at=now,
        )
        if draft:
            state = "draft"
        elif row is None or row.state == "draft":
            state = "awaiting_approval" if self.cfg.schedule.require_approval else "approved"
        else:
            state = row.state
        if row is None:
            conn.execute(sa.insert(i).values(kind="story", key=slug, state=state, created_at=now, slugs=slug, **values))
            log.info("issue %s %s", slug, state.replace("_", " "))
        elif row.content_hash != issue.content_hash or row.state != state:
            extra = {"approved_at": now} if state == "approved" and row.state != "approved" else {}
            conn.execute(sa.update(i).where(i.c.id == row.id).values(state=state, **values, **extra))
            log.info("issue %s re-rendered (%s)", slug, state.replace("_", " "))

    # -- the public API ---------------------------------------------------

    def sync(self, paths: Iterable[str] | None = None) -> SyncResult:
        """One scan, plan and publish cycle; only what changed is read or written.

        ``paths`` (relative to the briefs folder) limits the scan to files a
        filesystem event named, so the cost follows the change, not the
        folder; None walks the whole folder.
        """
        with self._lock:
            index = self._load_index()
            if paths is None:
                seen = watch.scan(self.cfg.paths.briefs)
                subset = index
            else:
                wanted = sorted(set(paths))
                seen = {p: st for p in wanted if watch.is_watched(Path(p).name) and (st := watch.scan_one(self.cfg.paths.briefs / p))}
                subset = {p: index[p] for p in wanted if p in index}
            plan = watch.plan(subset, seen, now_ns=time.time_ns(), quiet=self.cfg.schedule.quiet_period)
            result = SyncResult(waiting=list(plan.waiting), retry_after=plan.retry_after)
            if not plan.read and not plan.removed:
                return result
            now = self._now()
            changed: set[str] = set()
            touched: set[str] = set()
            with self.engine.begin() as conn:
                for path in plan.read:
                    parsed, brief = _read_and_parse(self.cfg.paths.briefs, path, seen[path], self.cfg.site.base_url, self.cfg.site.tz)
                    if brief is not None:
                        self._remember(parsed.sha256, brief)
                    after = watch.scan_one(self.cfg.paths.briefs / path)
                    if after != seen[path]:
                        result.waiting.append(path)  # changed while we read it: next scan
                        continue
                    known = index.get(path)
                    if known is not None and known.sha256 == parsed.sha256 and parsed.error is None and known.slug == parsed.slug:
                        # Touched, not changed (e.g. `touch`, a save without edits).
                        conn.execute(sa.update(store.files).where(store.files.c.path == path).values(mtime_ns=parsed.stat.mtime_ns, size=parsed.stat.size))
                        index[path] = watch.Indexed(parsed.stat, known.sha256, known.slug)
                        continue
                    slug, tags, error = self._record(conn, parsed, now, index)
                    touched |= tags
                    if error is not None:
                        result.errors.append(error)
                    if slug is not None:
                        changed.add(slug)
                        result.published.append(slug)
                for path in plan.removed:
                    gone = index.pop(path)
                    conn.execute(sa.delete(store.files).where(store.files.c.path == path))
                    if gone.slug and self._retire(conn, gone.slug, path, now, touched):
                        changed.add(gone.slug)
                        result.removed.append(gone.slug)
                        log.info("removed %s (%s deleted)", gone.slug, path)
                for slug in sorted(changed):
                    result.written += self._story_outputs(conn, slug, now, make_issue=True)
                    if slug in result.published:
                        log.info("published %s", slug)
                if changed:
                    result.written += self._write_feeds(conn, {MAIN_FEED, *touched})
            self._ping_hub(result.written)
            return result

    def build_all(self, *, workers: int | None = None) -> BuildResult:
        """Render every brief now (no quiet period): web issues in parallel, then every feed."""
        with self._lock:
            index = self._load_index()
            seen = watch.scan(self.cfg.paths.briefs)
            result = SyncResult()
            now = self._now()
            items = sorted(seen.items())
            n_workers = workers or min(os.cpu_count() or 1, 8)
            chunk = max(1, min(200, len(items) // (n_workers * 4) or 1))
            chunks = [items[i : i + chunk] for i in range(0, len(items), chunk)]
            touched: set[str] = {MAIN_FEED}
            changed: set[str] = set()
            with self.engine.begin() as conn:
                for parsed_chunk in self._map_chunks(chunks, n_workers):
                    for parsed in parsed_chunk:
                        slug, tags, error = self._record(conn, parsed, now, index)
                        touched |= tags
                        if error is not None:
                            result.errors.append(error)
                        elif parsed.slug:
                            result.published.append(parsed.slug)
                            touched |= set(parsed.tags)
                        if slug is not None:
                            changed.add(slug)
                for path in [p for p in index if p not in seen]:
                    gone = index.pop(path)
                    conn.execute(sa.delete(store.files).where(store.files.c.path == path))
                    if gone.slug and self._retire(conn, gone.slug, path, now, touched):
                        result.removed.append(gone.slug)
                        remove(self.cfg.paths.public / "issues" / f"{gone.slug}.html")
                        remove(self.cfg.paths.public / "issues" / f"{gone.slug}.txt")
                # Every tag any live story has, so a deleted public/ is rebuilt whole.
                for (tags_text,) in conn.execute(sa.select(store.stories.c.feed_tags).where(store.stories.c.deleted_at.is_(None))):
                    touched |= _unframe(tags_text)
                result.written += self._write_feeds(conn, touched, force=True)
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

    # -- editors' actions ---------------------------------------------------

    def _issue_for(self, conn: sa.Connection, slug: str) -> Any:
        i = store.issues
        return conn.execute(sa.select(i.c.id, i.c.state).where(i.c.kind == "story", i.c.key == slug)).first()

    def approve(self, slug: str) -> None:
        with self._lock, self.engine.begin() as conn:
            s = store.stories
            story = conn.execute(sa.select(s.c.status, s.c.deleted_at).where(s.c.slug == slug)).first()
            if story is None:
                raise NotFound("story", slug)
            if story.status == "draft":
                raise StateError(f"{slug} is a draft: set status: published in its front matter first")
            if story.deleted_at is not None:
                raise StateError(f"{slug} was deleted from the briefs folder")
            now = self._now()
            row = self._issue_for(conn, slug)
            if row is None:
                self._upsert_issue(conn, slug, now, draft=False)
                row = self._issue_for(conn, slug)
            if row.state in ("sending", "sent"):
                raise StateError(f"{slug} is already {row.state}")
            if row.state == "approved":
                return
            conn.execute(sa.update(store.issues).where(store.issues.c.id == row.id).values(state="approved", approved_at=now, updated_at=now))
            log.info("issue %s approved", slug)

    def hold(self, slug: str) -> None:
        with self._lock, self.engine.begin() as conn:
            row = self._issue_for(conn, slug)
            if row is None:
                raise NotFound("story issue", slug)
            if row.state in ("sending", "sent"):
                raise StateError(f"{slug} is already {row.state}")
            if row.state == "draft":
                raise StateError(f"{slug} is a draft")
            conn.execute(sa.update(store.issues).where(store.issues.c.id == row.id).values(state="held", updated_at=self._now()))
            log.info("issue %s held", slug)

    def preview_story(self, slug: str) -> RenderedIssue:
        from .newsletter import render_story

        with self.engine.connect() as conn:
            brief = self._story_brief(conn, slug)
        return render_story(brief, self.cfg)

    # -- digests --------------------------------------------------------

    def _trigger(self) -> Any:
        from apscheduler.triggers.cron import CronTrigger

        return CronTrigger.from_crontab(self.cfg.schedule.digest_cron, timezone=self.cfg.site.tz)

    def period_key(self, fire: dt.datetime) -> str:
        local = fire.astimezone(self.cfg.site.tz)
        weekday = self.cfg.schedule.digest_cron.split()[4]
        if weekday != "*":
            year, week, _ = local.isocalendar()
            return f"{year}-W{week:02d}"
        return local.strftime("%Y-%m-%dT%H%M")

    def next_digest_time(self, after: dt.datetime | None = None) -> dt.datetime | None:
        if not self.cfg.schedule.digest_cron:
            return None
        now = (after or self.clock()).astimezone(self.cfg.site.tz)
        fire: dt.datetime | None = self._trigger().get_next_fire_time(None, now)
        return fire

    def previous_digest_time(self, now: dt.datetime | None = None) -> dt.datetime | None:
        """The last scheduled digest time at or before ``now`` (searching back 8 days)."""
        if not self.cfg.schedule.digest_cron:
            return None
        now = (now or self.clock()).astimezone(self.cfg.site.tz)
        trigger = self._trigger()
        fire = trigger.get_next_fire_time(None, now - dt.timedelta(days=8))
        last = None
        while fire is not None and fire <= now:
            last = fire
            fire = trigger.get_next_fire_time(fire, fire + dt.timedelta(seconds=1))
        return last

    def _cutoff(self, conn: sa.Connection) -> dt.datetime | None:
        raw = store.get_kv(conn, "digest.cutoff")
        return dt.datetime.fromisoformat(raw) if raw else None

    def _digest_rows(self, conn: sa.Connection, since: dt.datetime | None, until: dt.datetime) -> list[Any]:
        s = store.stories
        query = (
            sa.select(s.c.slug, s.c.path, s.c.content_hash)
            .where(s.c.status == "published", s.c.deleted_at.is_(None), s.c.created_at <= until.astimezone(dt.timezone.utc))
            .order_by(s.c.published_at.desc(), s.c.slug)
        )
        if since is not None:
            query = query.where(s.c.created_at > since.astimezone(dt.timezone.utc))
        return list(conn.execute(query).all())

    def next_digest(self) -> tuple[str, list[Brief]]:
        fire = self.next_digest_time() or self.clock()
        with self.engine.connect() as conn:
            rows = self._digest_rows(conn, self._cutoff(conn), self.clock())
            briefs = [self._stored_brief(conn, r.slug, r.path, r.content_hash) for r in rows]
        return self.period_key(fire), briefs

    def make_digest(self, fire: dt.datetime) -> int | None:
        """The digest for the period that fires at ``fire``; idempotent by period key."""
        from .newsletter import render_digest

        key = self.period_key(fire)
        with self._lock, self.engine.begin() as conn:
            i = store.issues
            if conn.execute(sa.select(i.c.id).where(i.c.kind == "digest", i.c.key == key)).first() is not None:
                log.info("digest %s exists already", key)
                return None
            rows = self._digest_rows(conn, self._cutoff(conn), fire)
            if not rows:
                store.set_kv(conn, "digest.cutoff", fire.astimezone(dt.timezone.utc).isoformat())
                log.info("digest %s: no new stories, nothing to send", key)
                return None
            briefs = [self._stored_brief(conn, r.slug, r.path, r.content_hash) for r in rows]
            label = fire.astimezone(self.cfg.site.tz).strftime("%A %d %B %Y")
            issue = render_digest(briefs, self.cfg, period_key=key, period_label=label)
            now = self._now()
            inserted = conn.execute(
                sa.insert(i).values(
                    kind="digest", key=key, state="approved", subject=issue.subject, preheader=issue.preheader,
                    html=issue.html, text=issue.text, content_hash=issue.content_hash,
                    slugs=",".join(b.slug for b in briefs), created_at=now, updated_at=now, approved_at=now,
                )
            ).inserted_primary_key
            assert inserted is not None
            issue_id = inserted[0]
            store.set_kv(conn, "digest.cutoff", fire.astimezone(dt.timezone.utc).isoformat())
            log.info("digest %s queued with %d stories", key, len(briefs))
            return int(issue_id)

    def run_digest(self) -> int | None:
        """The cron job: the digest of the period that has just fired."""
        fire = self.previous_digest_time()
        return self.make_digest(fire) if fire is not None else None

    def catch_up_digest(self) -> int | None:
        """At start-up: send a digest missed while the service was down, if not too late."""
        now = self.clock()
        with self.engine.begin() as conn:
            cutoff = self._cutoff(conn)
            if cutoff is None:
                # First start ever: nothing was missed. Stories from now on go in digests.
                store.set_kv(conn, "digest.cutoff", now.astimezone(dt.timezone.utc).isoformat())
                return None
        fire = self.previous_digest_time(now)
        if fire is None or fire <= cutoff:
            return None
        key = self.period_key(fire)
        late = (now - fire).total_seconds()
        if late > self.cfg.schedule.digest_max_lateness:
            log.warning("digest %s missed by %.0fs (max_lateness %.0fs): skipped; its stories go in the next digest",
                        key, late, self.cfg.schedule.digest_max_lateness)
            return None
        log.info("digest %s missed while down (%.0fs late): making it now", key, late)
        return self.make_digest(fire)

    # -- status -----------------------------------------------------------

    def status(self) -> Status:
        s, i, f = store.stories, store.issues, store.files
        with self.engine.connect() as conn:
            states: dict[str, int] = {}
            rows = conn.execute(
                sa.select(s.c.slug, s.c.title, s.c.status, s.c.deleted_at, i.c.state)
                .select_from(s.outerjoin(i, sa.and_(i.c.kind == "story", i.c.key == s.c.slug)))
            ).all()
            awaiting = []
            for r in rows:
                state = "deleted" if r.deleted_at is not None else (r.state or ("draft" if r.status == "draft" else "published"))
                states[state] = states.get(state, 0) + 1
                if state == "awaiting_approval":
                    awaiting.append((r.slug, r.title))
            errors = [(r.path, r.error) for r in conn.execute(sa.select(f.c.path, f.c.error).where(f.c.error.is_not(None)).order_by(f.c.seen_at.desc()).limit(20))]
        return Status(states, sorted(awaiting), errors, self.next_digest_time(), len(rows))
