#!/usr/bin/env python3
"""The service's safety net on an idle folder: a full scan against the sweep, CPU per pass.

Run from the repository root:

    .venv/bin/python bench/bench_walk.py [--sizes 30000,100000] [--repeat 7]

For each size N it writes N small brief files into one flat folder (only
their stat matters here: nothing changes, so nothing is read) and gives a
``Pipeline`` an index that matches them, as after a build. Then, interleaved:

* the full scan, ``Pipeline.sync(None)``: every file stat-ed and compared
  (the safety net before issue 17, and still the poll when file events are
  unavailable);
* the sweep, ``Pipeline.sweep()``: the folders' inode and mtime, and a
  rotating tenth of the files (see ``watch.Tree``);
* the sweep after the folder changed (the hard case: any file created,
  removed or renamed in it, an editor's swap file included, changes its
  mtime): the folder is listed again and compared with what the tree
  remembered, name by name.

It prints the median CPU seconds (process time) of each and what that costs
as a share of one core at the default ``schedule.full_scan_interval`` (30 s).
Target (issue 17): idle CPU < 1 % of a core at 30k and 100k briefs, of
which this pass is the part that grows with the folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from publisher.publish import watch  # noqa: E402
from publisher.publish.fileindex import FileIndex  # noqa: E402
from publisher.publish.pipeline import Pipeline  # noqa: E402
from publisher.store import connect  # noqa: E402
from tests.support.project import build_config  # noqa: E402

WORK = ROOT / "bench" / ".work" / "walk"
INTERVAL = 30.0


def _setup(n: int) -> tuple[Pipeline, Path]:
    root = WORK / str(n)
    shutil.rmtree(root, ignore_errors=True)
    briefs = root / "briefs"
    briefs.mkdir(parents=True)
    for i in range(n):
        (briefs / f"story-{i:06d}.md").write_bytes(b"# x\n")
    old = time.time() - 60
    os.utime(briefs, (old, old))  # past the racy window, as a folder at rest is
    cfg = build_config(root)
    pipeline = Pipeline(cfg, connect(cfg.store_url))
    seen = watch.scan(briefs)
    # As after a build: the store knows every file as it is (no read needed).
    pipeline._index = FileIndex((p, watch.Indexed(st, "", None)) for p, st in seen.items())
    pipeline.sync()  # primes the sweep's tree; reads nothing
    return pipeline, briefs


def _touched(folder: Path, k: int) -> None:
    # A new mtime, past the racy window, as a swap file created and removed
    # there seconds ago leaves it; nothing else changes.
    old = time.time() - 60 + k
    os.utime(folder, (old, old))


def _cpu(fn: object) -> float:
    t0 = time.process_time()
    result = fn()  # type: ignore[operator]
    took = time.process_time() - t0
    assert not result.changed, result
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="30000,100000")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        pipeline, briefs = _setup(n)
        full: list[float] = []
        sweep: list[float] = []
        changed: list[float] = []
        for k in range(args.repeat):
            full.append(_cpu(pipeline.sync))
            sweep.append(_cpu(pipeline.sweep))
            _touched(briefs, k + 1)
            changed.append(_cpu(pipeline.sweep))
        rows.append((n, statistics.median(full), statistics.median(sweep), statistics.median(changed)))
        shutil.rmtree(WORK / str(n), ignore_errors=True)
    print(f"| briefs | full scan CPU | its share of a core every {INTERVAL:.0f} s | sweep CPU | its share | full/sweep "
          "| sweep after the folder changed | its share |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, f, s, c in rows:
        print(f"| {n:,} | {f * 1000:.1f} ms | {f / INTERVAL * 100:.2f} % | {s * 1000:.1f} ms | {s / INTERVAL * 100:.3f} % "
              f"| {f / s:.0f}× | {c * 1000:.1f} ms | {c / INTERVAL * 100:.2f} % |")


if __name__ == "__main__":
    main()
