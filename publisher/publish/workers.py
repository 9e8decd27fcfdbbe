"""The processes of a full build: a pool of forked workers that die with the build, and what each
worker knows (the build's settings, :func:`config`).

Light on purpose: a build's first pass (publish.heads) forks its workers
from here before the pipeline's modules (SQLAlchemy, the renderers) are
imported, so the parent imports them while the workers read the briefs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from typing import TypeVar

from ..core import memo
from ..core.config import Config

log = logging.getLogger(__name__)


def count(requested: int | None) -> int:
    """Workers for a build: as asked, else one per core (at most 8)."""
    return requested or min(os.cpu_count() or 1, 8)


_cfg: Config | None = None  # the settings of the build this worker serves (init_worker)
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


def init_worker(cfg: Config, parent: int | None = None) -> None:
    """A process set to do a build's work: a pool's worker (``parent``: the build's process, which it
    dies with), or the build's own process when it works alone."""
    global _cfg, _pooled
    _cfg = cfg
    _pooled = parent is not None
    if parent is not None:
        _die_with_parent(parent)
        # The parent decides when the build stops; a terminal's Ctrl-C goes to it alone,
        # and the SIGTERM handler forked from it (unwind the build) is not the worker's.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def config() -> Config:
    """The settings of the build this process works for (set by :func:`init_worker`)."""
    assert _cfg is not None, "not a build's worker: init_worker was not called"
    return _cfg


def chunk_done() -> None:
    """A pool worker's chunk is done: its stories never come back to this worker, so the render
    memos let go of them (at 100k briefs, about 20 MB a worker held beside the build's parent)."""
    if _pooled:
        memo.forget_all()


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


def executor(cfg: Config, n_workers: int) -> ProcessPoolExecutor:
    """``n_workers`` processes for ``cfg``'s build, forked at their first task, dying with this one."""
    import multiprocessing

    # fork: workers inherit the imported modules and compiled templates.
    return ProcessPoolExecutor(n_workers, mp_context=multiprocessing.get_context("fork"), initializer=init_worker,
                               initargs=(cfg, os.getpid()))


def kill_workers(pool: ProcessPoolExecutor) -> None:
    """``pool``'s processes stopped now, whatever they are doing (an interrupted build): its
    shutdown would wait for their tasks."""
    for proc in list(getattr(pool, "_processes", {}).values()):
        proc.kill()


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
        self._workers = [executor(cfg, 1) for _ in range(n_workers)]

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
                kill_workers(worker)
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
        init_worker(cfg)
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
