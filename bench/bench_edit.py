#!/usr/bin/env python3
"""One edit republished: the newest, a middle and the oldest story, and a fresh process's first edit.

Run from the repository root:

    .venv/bin/python bench/bench_edit.py [--sizes 10000,30000] [--edits 20] [--profile newest]

For each size N it generates N briefs (``bench/corpus.py``, the corpus of
``bench_build.py``) and builds them once with ``Pipeline.build_all`` in a
subprocess (kept under ``bench/.work/edit/n<N>`` and reused while the code
that shapes the store is the same: its schema revision; ``--rebuild`` forces a fresh one). Then,
in a fresh subprocess over that state, as ``bench_build.py``'s edit section
does: one edit of the newest story (a fresh process's first edit, reported
alone), then ``--edits`` edits each of the newest story, one in the middle
and the oldest, interleaved, each appending a sentence to its summary and
timed around ``sync([path])`` (the file event names it; quiet period 0).
Every timed edit must come back as published, else the run says so.

An edit is "republished" when every file and row it changes is written: the
story row, its email issue, its web page, the main feed and its tag feeds in
three formats, and the home and tag pages.

The edited briefs are put back afterwards (one untimed sync), so the next
run starts from the corpus as generated. ``uptime``'s load is printed: the
machine is shared.

Target (issue 17): p95 ≤ 100 ms for each of newest, middle and oldest.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import corpus  # noqa: E402
import common  # noqa: E402
from common import exclusive  # noqa: E402

# Edits are timed around sync(): no quiet period, no watcher thread.
SYNC_ONLY = "\n[schedule]\nquiet_period = 0.0\nwatch_events = false\n"

WORK = ROOT / "bench" / ".work" / "edit"
PYTHON = sys.executable


def pct(values: list[float], q: float) -> float:
    """The q-quantile by the nearest-rank rule (p95 of 20 is the 19th)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def write_config(base: Path) -> Path:
    return common.write_config(base / "run", base / "briefs", extra=SYNC_ONLY)


def prepare(n: int, seed: int, rebuild: bool) -> Path:
    """bench/.work/edit/n<N>: the corpus and one cold build of it; the config's path."""
    base = WORK / f"n{n}"
    if common.ensure_corpus(base, n, seed):
        rebuild = True
    built = base / "run" / "built"  # holds the schema revision the state was built at
    from publisher.store.migrate import HEAD

    if rebuild or not built.exists() or built.read_text() != HEAD:
        shutil.rmtree(base / "run", ignore_errors=True)
        cfg = write_config(base)
        t0 = time.perf_counter()
        subprocess.run([PYTHON, __file__, "--child-build", str(cfg)], cwd=ROOT, check=True)
        print(f"  built {n:,} briefs in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        built.write_text(HEAD)
    return base / "run" / "config.toml"


def child_build(config_path: str) -> None:
    from publisher import store
    from publisher.core import config
    from publisher.publish.pipeline import Pipeline

    cfg = config.load(config_path)
    Pipeline(cfg, store.connect(cfg.store_url)).build_all()


def child_edits(config_path: str, edits: int, profile: str | None) -> None:
    from publisher import store
    from publisher.core import config
    from publisher.publish.pipeline import Pipeline
    from publisher.store import stories

    cfg = config.load(config_path)
    engine = store.connect(cfg.store_url)
    pub = Pipeline(cfg, engine)
    t0 = time.perf_counter()
    pub.sync()  # what a service does first: load the index, compare the folder
    first_sync = time.perf_counter() - t0
    with engine.connect() as conn:
        refs = stories.newest(conn, None, None)
    targets = {"newest": refs[0].path, "middle": refs[len(refs) // 2].path, "oldest": refs[-1].path}
    originals = {rel: (cfg.paths.briefs / rel).read_bytes() for rel in targets.values()}
    missed = 0
    counter = 0
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()

    def edit(rel: str, kind: str = "") -> tuple[float, int]:
        nonlocal missed, counter
        counter += 1
        path = cfg.paths.briefs / rel
        text = path.read_text(encoding="utf-8")
        path.write_text(corpus.append_to_summary(text, f"Edit {counter} at {time.time_ns()} added this sentence."), encoding="utf-8")
        on = profiler is not None and kind == profile
        if on:
            profiler.enable()
        t0 = time.perf_counter()
        result = pub.sync([rel])  # as the service does when the file event names it
        took = time.perf_counter() - t0
        if on:
            profiler.disable()
        if not result.published:
            missed += 1
        return took, len(result.written)

    try:
        first_edit = edit(targets["newest"], "first")
        series: dict[str, list[tuple[float, int]]] = {k: [] for k in targets}
        for _ in range(edits):
            for kind, rel in targets.items():  # interleaved, so load bursts hit all three
                series[kind].append(edit(rel, kind))
    finally:
        for rel, data in originals.items():
            (cfg.paths.briefs / rel).write_bytes(data)
        pub.sync(list(originals))
    if profiler is not None:
        import pstats

        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(45)
    print(json.dumps({"first_sync": first_sync, "first_edit": first_edit, "series": series, "missed": missed}))


def bench_size(n: int, args: argparse.Namespace) -> list[str]:
    print(f"N={n}", file=sys.stderr)
    cfg = prepare(n, args.seed, args.rebuild)
    cmd = [PYTHON, __file__, "--child-edits", str(cfg), "--edits", str(args.edits)]
    if args.profile:
        cmd += ["--profile", args.profile]
    out = subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True).stdout
    info = json.loads(out.strip().splitlines()[-1])
    ms, files = info["first_edit"]
    rows = [f"| {n:,} | first edit in a fresh process (newest) | {ms * 1000:.0f} ms ({files} files) | | |",
            f"| {n:,} | first sync of a fresh process (nothing changed) | {info['first_sync'] * 1000:.0f} ms | | |"]
    for kind, runs in info["series"].items():
        times = [t * 1000 for t, _ in runs]
        p95 = pct(times, 0.95)
        ok = p95 <= 100 and not info["missed"]
        rows.append(f"| {n:,} | edit of the {kind} story, p50/p95/max (of {len(times)}) | "
                    f"{pct(times, 0.5):.0f} / {p95:.0f} / {max(times):.0f} ms ({statistics.median(w for _, w in runs):.0f} files) "
                    f"| p95 ≤ 100 ms | {'PASS' if ok else 'MISS'} |")
    if info["missed"]:
        print(f"  warning: {info['missed']} edits were not published by the sync after them", file=sys.stderr)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,30000", help="comma-separated brief counts")
    ap.add_argument("--edits", type=int, default=20, help="timed edits of each of the newest, a middle and the oldest story")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rebuild", action="store_true", help="build the corpus's state again")
    ap.add_argument("--profile", choices=("first", "newest", "middle", "oldest"), help="cProfile those edits (to stderr)")
    ap.add_argument("--child-build", metavar="CONFIG", help=argparse.SUPPRESS)
    ap.add_argument("--child-edits", metavar="CONFIG", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_build:
        return child_build(args.child_build)
    if args.child_edits:
        return child_edits(args.child_edits, args.edits, args.profile)
    lock = exclusive(WORK / "run.lock")  # noqa: F841  (held until exit)
    rows: list[str] = []
    loads = [os.getloadavg()]
    for n in [int(x) for x in args.sizes.split(",") if x]:
        rows += bench_size(n, args)
        loads.append(os.getloadavg())
    print(f"\nedit benchmark: {os.cpu_count()} cores, load average (1/5/15 min) "
          + " → ".join(f"{a:.2f} {b:.2f} {c:.2f}" for a, b, c in loads))
    print("| N | measure | value | target | |\n|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
