"""A build's work grows linearly with the folder: counted, not timed.

Two counters over the parent process of ``build_all`` (the workers only
parse and render, one brief at a time): the SQL statements sent, and the
Python frames entered (``sys.setprofile`` "call" events, which include every
step of a generator). A scan of the index per brief — the old duplicate-slug
check walked it whole for each file — shows as 4k²/1k² = 16× the frames for
4× the briefs; a per-brief query in a loop over all stories shows in the
statements. Ratios, not seconds, so a loaded machine cannot fail it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from publisher.core.clock import FixedClock
from publisher import publish
from publisher.publish.fileindex import FileIndex
from publisher.publish.pipeline import Pipeline
from publisher.publish.watch import Indexed, Stat
from publisher.store import connect

from tests.support.project import brief_text, build_config

SIZES = (1000, 2000, 4000)
# 4× the briefs may cost at most 4.4× the work (a fixed part, the schema and
# the feeds of a few tags, only makes the ratio smaller).
BOUND = 4.4
TAGS = ("chips", "energy", "trade", "health")


def _folder(root: Path, n: int) -> Path:
    briefs = root / "briefs"
    briefs.mkdir(parents=True)
    for i in range(n):
        day = dt.date(2026, 1, 1) + dt.timedelta(days=i % 300)
        text = brief_text(f"story-{i}", f"Story {i}", date=day.isoformat(), tags=f"{TAGS[i % 4]}, {TAGS[(i + 1) % 4]}")
        (briefs / f"story-{i:05d}.md").write_text(text)
    return root


@contextlib.contextmanager
def _counting() -> Iterator[list[int]]:
    """[Python frames entered, lines run in publisher/publish] while the block runs, in this thread."""
    counts = [0, 0]
    room = str(Path(publish.__file__).parent)

    def local(_frame: types.FrameType, event: str, _arg: object) -> Any:
        if event == "line":
            counts[1] += 1
        return local

    def trace(frame: types.FrameType, event: str, _arg: object) -> Any:
        # Every frame entered is counted; lines only in the publish room, where the per-brief loops live.
        counts[0] += 1
        return local if frame.f_code.co_filename.startswith(room) else None

    # The build forks its workers from this thread: they must not count (nor pay for) the tracing.
    os.register_at_fork(after_in_child=lambda: sys.settrace(None))
    sys.settrace(trace)
    try:
        yield counts
    finally:
        sys.settrace(None)


def _work(root: Path) -> tuple[int, int, int, int]:
    """(statements, Python frames entered, lines run in publisher/publish, stories published) for one cold build of ``root``."""
    cfg = build_config(root, schedule={"quiet_period": 0.0})
    engine = connect(cfg.store_url)
    statements = 0

    def count(*_args: Any) -> None:
        nonlocal statements
        statements += 1

    sa.event.listen(engine, "before_cursor_execute", count)
    pipeline = Pipeline(cfg, engine, clock=FixedClock(dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc)))
    with _counting() as counts:
        result = pipeline.build_all(workers=2)
    engine.dispose()
    frames, lines = counts
    return statements, frames, lines, len(result.published)


@pytest.mark.slow
def test_build_work_grows_linearly(tmp_path: Path) -> None:
    work = {n: _work(_folder(tmp_path / str(n), n)) for n in SIZES}
    for n in SIZES:
        assert work[n][3] == n, f"{n} briefs: only {work[n][3]} published"
    detail = {n: work[n][:3] for n in SIZES}
    for a, b in zip(SIZES, SIZES[1:]):  # each doubling too, so a late knee cannot hide
        assert all(work[b][i] / work[a][i] <= BOUND / 2 for i in range(3)), f"work more than doubles from {a} to {b}: {detail}"
    small, large = work[SIZES[0]], work[SIZES[-1]]
    growth = SIZES[-1] / SIZES[0]
    assert large[0] / small[0] <= BOUND * growth / 4, f"statements grow faster than the briefs: {detail}"
    assert large[1] / small[1] <= BOUND * growth / 4, f"Python frames grow faster than the briefs: {detail}"
    assert large[2] / small[2] <= BOUND * growth / 4, f"lines run in publisher/publish grow faster than the briefs: {detail}"


def test_file_index_keeps_slug_holders_in_step() -> None:
    ix = FileIndex()
    ix["a.md"] = Indexed(Stat(1, 1), "h1", "one")
    ix["b.md"] = Indexed(Stat(1, 1), "h2", "one")  # a deleted file not yet synced may still hold it
    assert ix.holders("one") == ["a.md", "b.md"]
    ix["a.md"] = Indexed(Stat(2, 1), "h3", "two")  # an edit that changed the slug
    assert ix.holders("one") == ["b.md"] and ix.holders("two") == ["a.md"]
    ix["b.md"] = Indexed(Stat(2, 1), "h2", None)  # now only a failure record
    assert ix.holders("one") == []
    del ix["a.md"]
    assert ix.holders("two") == [] and list(ix) == ["b.md"] and ix.get("a.md") is None


def _edit_work(root: Path) -> list[int]:
    """[frames, publish-room lines] of the sync that republishes one edited story, after a build."""
    cfg = build_config(root, schedule={"quiet_period": 0.0})
    engine = connect(cfg.store_url)
    pipeline = Pipeline(cfg, engine)
    pipeline.build_all(workers=2)
    counts: list[int] = []
    path = cfg.paths.briefs / "story-00007.md"
    original = path.read_text()
    for n in range(3):  # the first edit of a process may read the lists once: count the last
        path.write_text(original.replace("A summary.", f"A summary, edit {n}."))
        with _counting() as counts:
            result = pipeline.sync(["story-00007.md"])
        assert result.published == ["story-7"]
    engine.dispose()
    return counts


@pytest.mark.slow
def test_one_edit_costs_the_same_in_a_small_and_a_large_folder(tmp_path: Path) -> None:
    small, large = (_edit_work(_folder(tmp_path / str(n), n)) for n in (250, 1000))
    # 4× the stories: an edit that reads every story (the archive, the tag
    # counts) would cost ~4×; one that reads only its own pages stays flat.
    assert large[0] <= 1.2 * small[0] and large[1] <= 1.2 * small[1], (small, large)
