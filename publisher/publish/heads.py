"""A full build's first pass: the folder listed and every brief's head read (its slug and title).

A story page names its related stories by title, so a parallel build
learns every title first, from each brief's head (briefs.identity, a fifth
of a parse), and the workers that render the pages inherit them
(publish.related puts right the few that the store, after recording,
disagrees with).

:class:`FirstPass` forks its workers as soon as it is made, and this module
imports only what they need: ``publisher build`` makes it before it imports
the pipeline's modules (SQLAlchemy, the renderers), so the parent spends
on those imports the time the workers spend reading heads.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor

from ..briefs.files import NO_FOLLOW, OPEN_FLAGS, read_brief_bytes
from ..briefs.identity import identify
from ..core.config import Config
from ..core.errors import BriefError
from . import watch
from .workers import chunked, config, executor, init_worker, kill_workers


def read_brief(cfg: Config, path: str) -> bytes:
    """The bytes of brief ``path`` (relative to the briefs folder), read as the settings allow (size, links)."""
    # Joined as strings: a Path per read cost more than the read (a build reads each brief twice).
    return read_brief_bytes(os.path.join(cfg.paths.briefs, path), root=cfg.paths.briefs, max_bytes=cfg.briefs.max_bytes,
                            follow_symlinks=cfg.briefs.follow_symlinks)


# os.posix_fadvise is POSIX-only (absent on macOS and Windows): there the files are read as they come.
_ADVISE = getattr(os, "posix_fadvise", None)
_AHEAD_FLAGS = OPEN_FLAGS | NO_FOLLOW  # as a read opens a brief, links never followed


def read_ahead(cfg: Config, paths: Sequence[tuple[str, watch.Stat]]) -> None:
    """Ask the kernel to start reading every file of ``paths`` now, all at once.

    A cold build's first pass is the first to read each brief, and a read
    that waits on the disk keeps its worker idle: read one after the other,
    10k briefs out of the page cache took 0.9 s of the first pass's wall time
    against 0.3 s for the same pass over cached files, two workers a core
    each. Advised ahead (``POSIX_FADV_WILLNEED``), the chunk's reads are in
    flight together and the pass takes 0.3 s either way. Only an advice: no
    byte is read here, a file it cannot open is left to the read that
    reports why, a link is not followed and a file over ``briefs.max_bytes``
    is not asked for (the read refuses it unread).
    """
    if _ADVISE is None:
        return
    root = os.fspath(cfg.paths.briefs)
    limit = cfg.briefs.max_bytes
    for path, stat in paths:
        if stat.size > limit:
            continue
        try:
            fd = os.open(os.path.join(root, path), _AHEAD_FLAGS)
        except OSError:
            continue
        try:
            _ADVISE(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass  # a FIFO or another file that takes no advice: its read says what it is
        finally:
            os.close(fd)


def identify_chunk(paths: Sequence[tuple[str, watch.Stat]]) -> list[tuple[str, str]]:
    """(slug, title) of each published brief in ``paths``, from its head (briefs.identity).

    A file that cannot be read or whose head is broken has none: its full
    parse reports the error, with the line, in the build that follows.
    """
    cfg = config()
    read_ahead(cfg, paths)
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


class FirstPass:
    """The briefs folder listed, and its briefs' heads being read by forked workers from now on.

    ``seen`` and ``blind`` are :func:`watch.scan`'s (``tree`` its record of
    the folder), ``chunks`` the files in path order as the build's passes
    deal them out; :meth:`titles` waits for the heads.
    """

    def __init__(self, cfg: Config, n_workers: int) -> None:
        self.cfg = cfg
        self.tree = watch.Tree()
        self.blind: set[str] = set()
        self.seen = watch.scan(cfg.paths.briefs, follow_symlinks=cfg.briefs.follow_symlinks, blind=self.blind, tree=self.tree)
        self.chunks = chunked(sorted(self.seen.items()), n_workers)
        self._pool: ProcessPoolExecutor | None = None
        self._found: Iterator[list[tuple[str, str]]] | None = None
        if n_workers > 1 and len(self.chunks) > 1:
            self._pool = executor(cfg, n_workers)
            # Every chunk is submitted (and every worker forked) here, so the workers read on while
            # this process does other work. Frozen, the parent's objects are left alone by the
            # workers' garbage collector, which would copy every page of them into each worker.
            gc.freeze()
            try:
                self._found = self._pool.map(identify_chunk, self.chunks)
            finally:
                gc.unfreeze()

    def titles(self) -> dict[str, str]:
        """slug → title of each story the build is to publish; the first file in path order wins a
        slug, as recording decides in a fresh store. The workers are let go."""
        found: Iterable[list[tuple[str, str]]]
        if self._found is None:  # alone: the heads are read here, now
            init_worker(self.cfg)
            found = map(identify_chunk, self.chunks)
        else:
            found = self._found
        titles: dict[str, str] = {}
        try:
            for pairs in found:
                for slug, title in pairs:
                    titles.setdefault(slug, title)
        except BaseException:
            self.close()
            raise
        self.close(kill=False)
        return titles

    def close(self, *, kill: bool = True) -> None:
        """The workers let go; ``kill``: stopped now, whatever they are doing (a build given up)."""
        pool, self._pool, self._found = self._pool, None, None
        if pool is None:
            return
        if kill:
            kill_workers(pool)
        pool.shutdown(wait=True, cancel_futures=True)
