"""One brief file read, parsed and (in a build worker) rendered: the unit the pipeline isolates.

Everything a file can do wrong ends here as a :class:`Parsed` with an error
naming the file (and line, when the parser knows it); nothing raised while
handling one file reaches the files beside it. ``Parsed.retry`` tells a
content error (recorded, read again only when the file changes) from a
failure of the moment (a render, a full disk: read again on a later scan).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as dt
import gc
import hashlib
import logging
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..briefs.files import read_brief_bytes
from ..briefs.identity import identify
from ..briefs.model import Brief
from ..briefs.parse import parse_brief
from ..briefs.slugs import tag_slug
from ..core import memo
from ..core.config import Config
from ..core.errors import BriefError, BriefUnreadable, PublisherError
from ..render import site
from ..render.email import RenderedIssue, story_web_text, web_text
from . import watch
from .outputs import write_all_atomic

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
    retry: bool = False  # the error is of the moment (render, I/O), not of the content
    written: tuple[str, ...] = ()  # files under public/ a build worker wrote for it


def failure_message(full: Path, exc: BaseException) -> str:
    """``file: cannot publish: reason [errno]``: one line for the log, the store and `status`."""
    if isinstance(exc, OSError):
        code = f" [{errno_name(exc.errno)}]" if exc.errno else ""
        return f"{full}: cannot publish: {exc.strerror or exc}{code}"
    if isinstance(exc, PublisherError):
        return f"{full}: cannot publish: {exc}"
    # A database error's text carries its SQL and parameters: its driver's first line says it.
    first = (str(getattr(exc, "orig", None) or exc).splitlines() or [""])[0]
    return f"{full}: cannot publish: {type(exc).__name__}: {first}"


def errno_name(code: int | None) -> str:
    import errno

    return errno.errorcode.get(code or 0, str(code))


def read_brief(cfg: Config, path: str) -> bytes:
    """The bytes of brief ``path`` (relative to the briefs folder), read as the settings allow (size, links)."""
    # Joined as strings: a Path per read cost more than the read (a build reads each brief twice).
    return read_brief_bytes(os.path.join(cfg.paths.briefs, path), root=cfg.paths.briefs, max_bytes=cfg.briefs.max_bytes,
                            follow_symlinks=cfg.briefs.follow_symlinks)


def read_and_parse(cfg: Config, path: str, stat: watch.Stat) -> tuple[Parsed, Brief | None]:
    got = _read_brief_file(cfg, path, stat)
    if isinstance(got, Parsed):
        return got, None
    data, brief = got
    return parsed_story(cfg, path, stat, data, brief), brief


def _read_brief_file(cfg: Config, path: str, stat: watch.Stat) -> Parsed | tuple[bytes, Brief]:
    """The bytes and Brief of file ``path``, or the :class:`Parsed` that says why there are none."""
    full = os.path.join(cfg.paths.briefs, path)
    try:
        data = read_brief(cfg, path)
    except BriefUnreadable as exc:
        return Parsed(path, stat, "", str(exc), retry=True)  # e.g. permissions: a chmod does not change the mtime
    except BriefError as exc:
        return Parsed(path, stat, "", str(exc))
    try:
        brief = parse_brief(data, full, base_url=cfg.site.base_url)
    except BriefError as exc:
        return Parsed(path, stat, hashlib.sha256(data).hexdigest(), str(exc))
    return data, brief


def parsed_story(cfg: Config, path: str, stat: watch.Stat, data: bytes, brief: Brief, written: tuple[str, ...] = ()) -> Parsed:
    """The :class:`Parsed` of a brief that parsed (``data``, its bytes, become the story's stored source)."""
    return Parsed(
        path, stat, brief.content_hash, None, brief.slug, brief.title, brief.status, brief.published_at(cfg.site.tz),
        brief.updated, feed_tags(brief), data, brief.related, written=written,
    )


def write_web_issue(
    brief: Brief, cfg: Config, issue: RenderedIssue | None = None, related_titles: dict[str, str] | None = None
) -> list[str]:
    """public/issues/<slug>.html, the story's web page (what the email's "view in browser" opens,
    without the email's footer), and .txt, the email's plain text.

    Both files are staged before either replaces its old version, so a full
    disk leaves the old pair, never a new page beside an old text.
    """
    page = site.story_page(brief, cfg, related_titles=related_titles)
    # A build has no issue: it needs the text alone, not the email HTML that sets how many takes it lists.
    text = web_text(issue, cfg) if issue is not None else story_web_text(brief, cfg, related_titles=related_titles)
    base = cfg.paths.public / "issues"
    items = [(base / f"{brief.slug}.html", page.encode("utf-8")), (base / f"{brief.slug}.txt", text.encode("utf-8"))]
    return [f"issues/{p.name}" for p in write_all_atomic(items)]


# -- the process-pool side of a full build ------------------------------------

_worker_cfg: Config | None = None
_pooled = False  # this process is a build's pool worker
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """A worker must not outlive the build that started it (kill -9 of the parent included)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d; watching the parent instead", ctypes.get_errno())
        elif os.getppid() == parent:
            return
        else:
            os._exit(1)  # the parent died before the death signal was armed
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watch", daemon=True).start()


def _watch_parent(parent: int) -> None:
    import time

    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


# A build allocates millions of short-lived objects (a brief's takes, views,
# strings), nearly none of them in cycles: at CPython's default of a
# collection every 700 net allocations, the collector ran a few times per
# brief and walked what survived, 2-3 % of a worker's CPU; every 20,000 it is
# a few times per chunk. Cyclic garbage still goes, a little later.
BUILD_GC_THRESHOLD = 20_000


@contextmanager
def fewer_collections() -> Iterator[None]:
    """The garbage collector's first threshold raised to :data:`BUILD_GC_THRESHOLD` for a build's
    duration; the pool workers forked meanwhile inherit it."""
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], BUILD_GC_THRESHOLD), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _init_worker(cfg: Config, parent: int | None = None) -> None:
    global _worker_cfg, _pooled
    _worker_cfg = cfg
    _pooled = parent is not None
    if parent is not None:
        _die_with_parent(parent)
        # The parent decides when the build stops; a terminal's Ctrl-C goes to it alone,
        # and the SIGTERM handler forked from it (unwind the build) is not the worker's.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


# slug → title of every story a build expects to publish (see identify_chunk),
# set by the parent before it forks the workers that render pages, which
# inherit it rather than receive a copy of it.
_titles_ahead: dict[str, str] = {}


def set_titles_ahead(titles: dict[str, str]) -> None:
    global _titles_ahead
    _titles_ahead = titles


def related_titles(related: Sequence[str], titles: dict[str, str]) -> dict[str, str]:
    """The titles a page naming ``related`` shows, from ``titles``."""
    return {slug: titles[slug] for slug in related if slug in titles}


def identify_chunk(paths: Sequence[tuple[str, watch.Stat]]) -> list[tuple[str, str]]:
    """(slug, title) of each published brief in ``paths``, from its head (briefs.identity).

    A file that cannot be read or whose head is broken has none: its full
    parse reports the error, with the line, in the build that follows.
    """
    cfg = _worker_cfg
    assert cfg is not None
    out: list[tuple[str, str]] = []
    for path, _stat in paths:
        try:
            data = read_brief(cfg, path)
        except BriefError:
            continue
        found = identify(data, os.path.join(cfg.paths.briefs, path))
        if found is not None and found.status != "draft":
            out.append((found.slug, found.title))
    return out


def build_one(cfg: Config, path: str, stat: watch.Stat) -> Parsed:
    """Read, parse and write the web issue of one file; whatever fails is this file's error."""
    got = _read_brief_file(cfg, path, stat)
    if isinstance(got, Parsed):
        return got
    data, brief = got
    if brief.is_draft:
        return parsed_story(cfg, path, stat, data, brief)
    try:
        written = write_web_issue(brief, cfg, None, related_titles(brief.related, _titles_ahead))
    except Exception as exc:  # whatever one brief does, the others publish (the parent logs it)
        return Parsed(path, stat, brief.content_hash, failure_message(cfg.paths.briefs / path, exc), retry=True)
    # One Parsed, made with the files written (not made, then copied by dataclasses.replace).
    return parsed_story(cfg, path, stat, data, brief, tuple(written))


def build_chunk(paths: Sequence[tuple[str, watch.Stat]]) -> list[Parsed]:
    cfg = _worker_cfg
    assert cfg is not None
    out = [build_one(cfg, path, stat) for path, stat in paths]
    chunk_done()
    return out


def chunk_done() -> None:
    """A pool worker's chunk is done: its stories never come back to this worker, so the render
    memos let go of them (at 100k briefs, about 20 MB a worker held beside the build's parent)."""
    if _pooled:
        memo.forget_all()


@dataclass(frozen=True)
class PageJob:
    """A web issue to render again once the build knows the titles of the stories it names."""

    path: str
    sha256: str  # what the build recorded: a file changed since is left to the parent
    titles: dict[str, str]


def page_chunk(jobs: Sequence[PageJob]) -> list[tuple[PageJob, list[str] | None]]:
    """Each job's web issue (page and text) rewritten with its related titles; None where the parent must do it (changed file, failure)."""
    cfg = _worker_cfg
    assert cfg is not None
    out: list[tuple[PageJob, list[str] | None]] = []
    for job in jobs:
        parsed, brief = read_and_parse(cfg, job.path, watch.Stat(0, 0))
        written: list[str] | None = None
        if brief is not None and parsed.sha256 == job.sha256:
            try:
                written = write_web_issue(brief, cfg, None, job.titles)
            except Exception:  # noqa: BLE001 - the parent renders it again and raises with context
                log.debug("%s: story page left to the parent", job.path, exc_info=True)
        out.append((job, written))
    chunk_done()
    return out


T = TypeVar("T")


def chunked(items: Sequence[T], n_workers: int) -> list[list[T]]:
    """Items in chunks: about four per worker, at most 200 (a chunk is one transaction).

    The last two rounds are cut four times finer, so the workers run out of
    work together: with whole chunks to the end, one worker finished its last
    200 briefs (0.3 s at 10k) while the other had nothing left to do.
    """
    size = max(1, min(200, len(items) // (n_workers * 4) or 1))
    head = max(0, len(items) - 2 * n_workers * size)
    small = max(1, size // 4)
    return [list(items[i : min(i + size, head)]) for i in range(0, head, size)] + [
        list(items[i : i + small]) for i in range(head, len(items), small)
    ]


Chunk = TypeVar("Chunk")
Result = TypeVar("Result")


class WorkerPool:
    """Forked workers that die with this process, kept for a whole build: its pages, then, down
    to one (:meth:`keep_one`), the head start of its tail (:meth:`submit`, :meth:`release`).

    Each worker is an executor of its own, so that all but one can be let go
    after the main pass: a worker holds the pages it wrote while rendering
    (at 100k briefs, about 70 MB each), and two of them kept beside the tail's
    largest state broke the 100k memory target (bench/README.md, eighth and
    ninth sessions). Forked at the first use, before the build records
    anything: a worker forked later would copy the pages of everything
    recorded (seventh session).
    """

    # Chunks handed to a worker ahead of its results: one running, one waiting, so it never idles
    # while the parent records.
    DEPTH = 2

    def __init__(self, cfg: Config, n_workers: int) -> None:
        import multiprocessing

        # fork: workers inherit the imported modules and compiled templates.
        ctx = multiprocessing.get_context("fork")
        self._workers: list[ProcessPoolExecutor] = [
            ProcessPoolExecutor(1, mp_context=ctx, initializer=_init_worker, initargs=(cfg, os.getpid()))
            for _ in range(n_workers)
        ]

    def map(self, work: Callable[[Chunk], Result], chunks: list[Chunk]) -> Iterator[Result]:
        """:func:`map_chunks` in these workers, each given the next chunk as it finishes one;
        interrupted, it stops them (:meth:`close`)."""
        assert self._workers
        todo = deque(chunks)
        chunks.clear()  # each chunk is let go once its results are in
        order: deque[tuple[Future[Result], int]] = deque()  # handed out, in the chunks' order

        def hand_out() -> None:
            for i, worker in enumerate(self._workers):
                busy = sum(1 for f, w in order if w == i and not f.done())
                for _ in range(min(self.DEPTH - busy, len(todo))):
                    order.append((worker.submit(work, todo.popleft()), i))

        finished = False
        try:
            # Every worker is forked by its first chunk, here. Frozen, the parent's objects
            # (the scan of a 100k folder, the index) are left alone by the workers' garbage
            # collector: it would write to each one's header and so copy every page of them
            # into every worker.
            gc.freeze()
            try:
                hand_out()
            finally:
                gc.unfreeze()
            while order:
                if not order[0][0].done():
                    wait([f for f, _ in order if not f.done()], return_when=FIRST_COMPLETED)
                    hand_out()
                while order and order[0][0].done():
                    yield order.popleft()[0].result()
                    hand_out()  # a worker may have finished while the caller used that result
            finished = True
        finally:
            if not finished:
                self.close(kill=True)

    def keep_one(self) -> None:
        """All workers but one let go (they are idle: between the build's passes)."""
        assert self._workers
        for worker in self._workers[1:]:
            worker.shutdown(wait=True)
        del self._workers[1:]

    def submit(self, work: Callable[[Chunk], Result], chunk: Chunk) -> Future[Result]:
        """``work`` on ``chunk`` in the first worker, after what it was given before."""
        assert self._workers
        return self._workers[0].submit(work, chunk)

    def release(self) -> None:
        """The workers exit once they have done what they were given; :meth:`close` joins them. Their
        pages go as soon as they are done, while the parent is still writing, well before the
        parent's own state is at its largest (the end of the build's tail)."""
        for worker in self._workers:
            worker.shutdown(wait=False)

    def close(self, *, kill: bool = False) -> None:
        """Let the workers go; ``kill``: now, whatever they are doing (an interrupted build)."""
        workers, self._workers = self._workers, []
        if kill:
            for worker in workers:
                for proc in list(getattr(worker, "_processes", {}).values()):
                    proc.kill()
        for worker in workers:
            worker.shutdown(wait=True, cancel_futures=True)


def map_chunks(cfg: Config, work: Callable[[Chunk], Result], chunks: list[Chunk], n_workers: int,
               pool: WorkerPool | None = None) -> Iterator[Result]:
    """``work`` over each chunk, results in order: in this process, or in a pool of forked workers that die with it
    (``pool``, which stays open for the caller, or one for this call alone).

    ``chunks`` is emptied as they are handed out, so a chunk's items are
    freed as soon as its results are in, not at the end of the build.
    """
    if n_workers <= 1 or len(chunks) <= 1:
        _init_worker(cfg)
        todo = chunks[::-1]
        chunks.clear()
        while todo:
            yield work(todo.pop())
        return
    if pool is not None:
        yield from pool.map(work, chunks)
        return
    own = WorkerPool(cfg, n_workers)
    try:
        yield from own.map(work, chunks)
    finally:
        own.close()
