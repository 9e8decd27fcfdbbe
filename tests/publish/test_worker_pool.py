"""workers.WorkerPool: a build's forked workers, each an executor of its own.

Chunks go to whichever worker is free, results come back in the chunks'
order whatever the caller does meanwhile; after the main pass all workers but
one are let go, and the last one, released, exits once its last chunk is done.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from publisher.core import memo
from publisher.core.config import Config
from publisher.publish import reading, workers

from tests.support.project import make_project


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    return make_project(tmp_path, samples=False)


def _square(chunk: list[int]) -> list[int]:
    return [n * n for n in chunk]


def _slow_on_odd(chunk: list[int]) -> list[tuple[int, int]]:
    time.sleep(0.02 if chunk[0] % 2 else 0.0)
    return [(n, os.getpid()) for n in chunk]


def _pid(chunk: list[int]) -> int:
    return os.getpid()


def _memos_after_a_chunk(chunk: list[int]) -> tuple[int, int]:
    """How many values a render memo holds before and after a build chunk of this process."""
    kept: memo.IdentityMemo[int] = memo.IdentityMemo(8)
    kept.put((object(),), (), 1)
    before = len(kept)
    reading.build_chunk([])
    return before, len(kept)


def test_every_result_comes_back_in_order_while_the_caller_is_slow(cfg: Config) -> None:
    # The caller records a chunk (slow) while the workers finish the next ones: none may be lost.
    pool = workers.WorkerPool(cfg, 2)
    try:
        got = []
        for result in pool.map(_square, [[n] for n in range(60)]):
            if len(got) % 7 == 0:
                time.sleep(0.05)
            got += result
    finally:
        pool.close()
    assert got == [n * n for n in range(60)]


def test_a_free_worker_takes_the_next_chunk(cfg: Config) -> None:
    # Odd chunks are slow: dealt out in turn, one worker would take every slow one and the other none.
    pool = workers.WorkerPool(cfg, 2)
    try:
        chunks = [[n] for n in range(40)]
        done = [pair for result in pool.map(_slow_on_odd, chunks) for pair in result]
    finally:
        pool.close()
    assert [n for n, _ in done] == list(range(40))
    assert chunks == []  # handed over: the caller's list lets go of them
    slow_by = {pid for n, pid in done if n % 2}
    assert len(slow_by) == 2


def test_after_the_main_pass_one_worker_is_kept_and_the_last_exits_when_done(cfg: Config) -> None:
    pool = workers.WorkerPool(cfg, 2)
    try:
        pids = {pid for pid in pool.map(_pid, [[n] for n in range(8)])}
        assert len(pids) == 2
        pool.keep_one()
        (kept,) = set(pool.map(_pid, [[n] for n in range(4)]))
        first, last = pool.submit(_pid, [0]), pool.submit(_pid, [1])
        pool.release()
        assert first.result(timeout=30) == last.result(timeout=30) == kept
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _alive(kept):
            time.sleep(0.01)
        assert not _alive(kept), "the last worker outlived its chunk"
        assert not _alive(next(iter(pids - {kept})))
    finally:
        pool.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_a_pool_worker_lets_its_memos_go_after_each_chunk_the_parent_keeps_them(cfg: Config) -> None:
    pool = workers.WorkerPool(cfg, 2)
    try:
        assert list(pool.map(_memos_after_a_chunk, [[0], [1]])) == [(1, 0), (1, 0)]
    finally:
        pool.close()
    workers.init_worker(cfg)  # a build in this process: its memos serve the service afterwards
    assert _memos_after_a_chunk([0]) == (1, 1)
