#!/usr/bin/env python3
"""Full build and one-brief rebuild time and peak memory, beside Hugo building the same stories.

Run from the repository root:

    .venv/bin/python bench/bench_build.py [--sizes 1000,10000] [--repeat 3] [--edits 10]

For each size N it generates N realistic briefs (``bench/corpus.py``: ~17
takes in ~6 lenses, 8 regions) and the same stories as a Hugo site, then, in
one run and interleaved so load bursts hit both sides:

* our cold full build (``Publisher.build_all``: web issues, feeds, tag
  feeds) in a fresh subprocess per run, into an empty public/ and an empty
  store. Time is measured inside the child around ``Pipeline(...)`` +
  ``build_all()`` (Python start-up is not counted; wall time is shown too);
* ``hugo --quiet`` into a fresh destination per run (pages, list pages,
  tag taxonomy and RSS feeds), wall time;
* peak memory of each, sampled every 20 ms as the sum of PSS over the whole
  process tree (the build forks a process pool; PSS splits the pages the
  workers share with the parent, so the sum is what the build really holds),
  plus the largest single process's ``ru_maxrss`` from ``wait4``;
* the incremental rebuild: in a fresh process over the last cold build's
  state, append a sentence to one brief's summary and time ``sync()``
  (median of ``--edits`` single-file edits, quiet period 0).

Targets (issue 3): cold build of 10,000 ≤ 1.5 × Hugo; peak memory ≤ 300 MB at
10,000; rebuild after one brief changes ≤ 100 ms. The machine is shared and
noisy: read the ratios, taken in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import corpus  # noqa: E402
from common import exclusive, pss_bytes, tree  # noqa: E402

WORK = ROOT / "bench" / ".work" / "build"
PYTHON = sys.executable
MB = 1024 * 1024


# -- process-tree memory ----------------------------------------------------


@dataclass
class Measured:
    wall: float
    peak_tree: int  # bytes, sum of PSS over the process tree, sampled
    max_rss: int  # bytes, largest single process (wait4)
    rc: int
    stdout: str
    stderr: str


def measure(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> Measured:
    """Run ``cmd``, sampling its process tree's PSS; wall time and peaks."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            total = sum(pss_bytes(p) for p in tree(proc.pid))
            peak = max(peak, total)
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    # Read the pipes in threads so a chatty child never blocks on a full pipe.
    outs: dict[str, str] = {}
    readers = [
        threading.Thread(target=lambda: outs.__setitem__("out", proc.stdout.read() if proc.stdout else "")),
        threading.Thread(target=lambda: outs.__setitem__("err", proc.stderr.read() if proc.stderr else "")),
    ]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    for r in readers:
        r.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Measured(wall, peak, usage.ru_maxrss * 1024, proc.returncode, outs.get("out", ""), outs.get("err", ""))


# -- the corpus and configs -------------------------------------------------


def prepare(n: int, seed: int) -> Path:
    """bench/.work/build/n<N>: briefs/ and hugo/ for N stories (regenerated when the seed differs)."""
    base = WORK / f"n{n}"
    stamp = base / "corpus.json"
    want = {"n": n, "seed": seed, "version": 1}
    if stamp.exists() and json.loads(stamp.read_text()) == want:
        return base
    shutil.rmtree(base, ignore_errors=True)
    t0 = time.perf_counter()
    corpus.write_briefs(base / "briefs", seed, n)
    corpus.write_hugo_site(base / "hugo", seed, n)
    stamp.write_text(json.dumps(want))
    print(f"  generated {n} briefs and Hugo pages in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return base


def write_config(base: Path, run: str) -> Path:
    """A config whose public/ and state/ are fresh for this run."""
    out = base / run
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cfg = out / "config.toml"
    cfg.write_text(
        f"""\
[site]
base_url = "https://briefs.example.org/"

[paths]
briefs = "{base / 'briefs'}"
public = "{out / 'public'}"
state = "{out / 'state'}"
templates = "{ROOT / 'templates'}"

[schedule]
quiet_period = 0.0
watch_events = false

[digests]
daily = ""
weekly = ""
""",
        encoding="utf-8",
    )
    return cfg


# -- child modes (run in a fresh interpreter) -------------------------------


def child_build(config_path: str) -> None:
    from publisher.core import config
    from publisher import store
    from publisher.publish.pipeline import Pipeline

    cfg = config.load(config_path)
    t0 = time.perf_counter()
    engine = store.connect(cfg.store_url)
    result = Pipeline(cfg, engine).build_all()
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "published": len(result.published), "errors": result.errors[:5],
                      "n_errors": len(result.errors), "written": len(result.written)}))


def child_edits(config_path: str, edits: int) -> None:
    from publisher.core import config
    from publisher import store
    from publisher.publish.pipeline import Pipeline

    cfg = config.load(config_path)
    pub = Pipeline(cfg, store.connect(cfg.store_url))
    t0 = time.perf_counter()
    first = pub.sync()  # nothing changed since the cold build: loads and compares the index
    first_s = time.perf_counter() - t0
    idle = []
    for _ in range(3):
        t0 = time.perf_counter()
        pub.sync()
        idle.append(time.perf_counter() - t0)
    files = sorted(p for p in cfg.paths.briefs.iterdir() if p.suffix == ".txt")
    times: list[float] = []
    full_times: list[float] = []
    written: list[int] = []
    missed = 0
    for k in range(edits * 2):
        path = files[(k * 7919) % len(files)]
        text = path.read_text(encoding="utf-8")
        path.write_text(corpus.append_to_summary(text, f"Edit {k} at {time.time_ns()} added this sentence."), encoding="utf-8")
        # Odd edits as the service handles them (the file event names the
        # file), even ones with a walk of the whole folder (the safety net).
        event = k % 2 == 1
        t0 = time.perf_counter()
        result = pub.sync([path.name] if event else None)
        (times if event else full_times).append(time.perf_counter() - t0)
        if event:
            written.append(len(result.written))
        if not result.published:
            missed += 1
    print(json.dumps({"first": first_s, "first_changed": first.changed, "idle": idle, "edits": times,
                      "edits_full": full_times, "written": written, "missed": missed}))


# -- the table ---------------------------------------------------------------


@dataclass
class Row:
    size: int
    what: str
    ours: str
    hugo: str = ""
    ratio: str = ""
    target: str = ""
    verdict: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    def add(self, *args: object, **kw: object) -> None:
        self.rows.append(Row(*args, **kw))  # type: ignore[arg-type]

    def print(self) -> None:
        head = ("N", "measure", "ours", "hugo", "ours/hugo", "target", "")
        cells = [head] + [(f"{r.size:,}", r.what, r.ours, r.hugo, r.ratio, r.target, r.verdict) for r in self.rows]
        widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
        for j, c in enumerate(cells):
            print("  ".join(x.ljust(w) for x, w in zip(c, widths)).rstrip())
            if j == 0:
                print("  ".join("-" * w for w in widths))


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def bench_size(n: int, args: argparse.Namespace, report: Report) -> None:
    print(f"N={n}", file=sys.stderr)
    base = prepare(n, args.seed)
    hugo = shutil.which("hugo")
    ours_runs: list[tuple[float, Measured]] = []
    hugo_runs: list[Measured] = []
    cfg = base / "cold-0" / "config.toml"
    for r in range(args.repeat):
        cfg = write_config(base, f"cold-{r}")
        m = measure([PYTHON, __file__, "--child-build", str(cfg)], cwd=ROOT)
        if m.rc != 0:
            sys.exit(f"our build failed (rc {m.rc}):\n{m.stderr[-3000:]}")
        info = json.loads(m.stdout.strip().splitlines()[-1])
        if info["n_errors"]:
            print(f"  warning: {info['n_errors']} briefs rejected, e.g. {info['errors'][:2]}", file=sys.stderr)
        ours_runs.append((info["seconds"], m))
        print(f"  ours  run {r}: {info['seconds']:.2f}s in-process, {m.wall:.2f}s wall, "
              f"peak {m.peak_tree / MB:.0f} MB tree PSS, {m.max_rss / MB:.0f} MB max RSS, "
              f"{info['published']} published, {info['written']} files", file=sys.stderr)
        if hugo:
            dest = base / f"hugo-out-{r}"
            shutil.rmtree(dest, ignore_errors=True)
            h = measure([hugo, "--quiet", "--source", str(base / "hugo"), "--destination", str(dest)])
            if h.rc != 0:
                sys.exit(f"hugo failed (rc {h.rc}):\n{h.stderr[-3000:]}")
            hugo_runs.append(h)
            print(f"  hugo  run {r}: {h.wall:.2f}s wall, peak {h.peak_tree / MB:.0f} MB", file=sys.stderr)
            shutil.rmtree(dest, ignore_errors=True)

    ours_t = statistics.median(s for s, _ in ours_runs)
    ours_wall = statistics.median(m.wall for _, m in ours_runs)
    ours_mem = max(m.peak_tree for _, m in ours_runs)
    ours_rss = max(m.max_rss for _, m in ours_runs)
    big = n >= 10_000
    if hugo_runs:
        hugo_t = statistics.median(h.wall for h in hugo_runs)
        hugo_mem = max(h.peak_tree for h in hugo_runs)
        ratio = ours_t / hugo_t
        report.add(n, "cold build, s (in-process)", f"{ours_t:.2f}", f"{hugo_t:.2f}", f"{ratio:.2f}",
                   "≤ 1.5" if big else "", verdict(ratio <= 1.5) if big else "")
        report.add(n, "cold build, s (wall)", f"{ours_wall:.2f}", f"{hugo_t:.2f}", f"{ours_wall / hugo_t:.2f}")
        report.add(n, "peak memory, MB (tree PSS)", f"{ours_mem / MB:.0f}", f"{hugo_mem / MB:.0f}",
                   f"{ours_mem / hugo_mem:.2f}", "≤ 300 MB" if big else "", verdict(ours_mem <= 300 * MB) if big else "")
    else:
        report.add(n, "cold build, s (in-process)", f"{ours_t:.2f}", "no hugo")
        report.add(n, "peak memory, MB (tree PSS)", f"{ours_mem / MB:.0f}", "", "", "≤ 300 MB" if big else "",
                   verdict(ours_mem <= 300 * MB) if big else "")
    report.add(n, "largest process, MB (maxrss)", f"{ours_rss / MB:.0f}")

    # The incremental rebuild runs over the state of the last cold build.
    m = measure([PYTHON, __file__, "--child-edits", str(cfg), "--edits", str(args.edits)], cwd=ROOT)
    if m.rc != 0:
        sys.exit(f"incremental run failed (rc {m.rc}):\n{m.stderr[-3000:]}")
    info = json.loads(m.stdout.strip().splitlines()[-1])
    med = statistics.median(info["edits"]) * 1000
    report.add(n, f"rebuild after 1 edit (event-named), ms (median of {len(info['edits'])})", f"{med:.0f}", "", "",
               "≤ 100 ms" if big else "", verdict(med <= 100 and not info["missed"]) if big else "")
    report.add(n, "  same, max ms", f"{max(info['edits']) * 1000:.0f}")
    report.add(n, "  same with a full folder walk, median ms", f"{statistics.median(info['edits_full']) * 1000:.0f}")
    report.add(n, "sync with nothing changed, ms", f"{statistics.median(info['idle']) * 1000:.0f}")
    report.add(n, "first sync of a new process, ms", f"{info['first'] * 1000:.0f}")
    if info["missed"]:
        print(f"  warning: {info['missed']} edits were not published by the sync after them", file=sys.stderr)
    print(f"  rebuilds: {[round(t * 1000) for t in info['edits']]} ms, files written {info['written']}", file=sys.stderr)
    if not args.keep:
        for r in range(args.repeat):
            shutil.rmtree(base / f"cold-{r}", ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000", help="comma-separated brief counts")
    ap.add_argument("--repeat", type=int, default=3, help="cold builds per side (median)")
    ap.add_argument("--edits", type=int, default=10, help="single-brief edits timed for the rebuild")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the build outputs under bench/.work/build")
    ap.add_argument("--child-build", metavar="CONFIG", help=argparse.SUPPRESS)
    ap.add_argument("--child-edits", metavar="CONFIG", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_build:
        return child_build(args.child_build)
    if args.child_edits:
        return child_edits(args.child_edits, args.edits)
    try:
        import publisher.feeds  # noqa: F401
    except ImportError:
        print("note: publisher.feeds is not installed: our build writes web issues only, no feeds", file=sys.stderr)
    lock = exclusive(WORK / "run.lock")  # noqa: F841  (held until exit)
    report = Report()
    for n in [int(x) for x in args.sizes.split(",") if x]:
        bench_size(n, args, report)
    print(f"\nbuild benchmark: {os.cpu_count()} cores, repeat {args.repeat}, hugo {'yes' if shutil.which('hugo') else 'absent'}")
    report.print()


if __name__ == "__main__":
    main()
