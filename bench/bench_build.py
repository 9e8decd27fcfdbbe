#!/usr/bin/env python3
"""Full build and one-brief edits: time, CPU and peak memory, beside Hugo building the same stories.

Run from the repository root:

    .venv/bin/python bench/bench_build.py [--sizes 1000,10000,30000,100000] [--repeat 3] [--edits 20]

For each size N it generates N realistic briefs (``bench/corpus.py``: ~17
takes in ~6 lenses, 8 regions) and the same stories as a Hugo site, then, in
one run and interleaved so load bursts hit all sides alike:

* our cold full build (``Pipeline.build_all``: web issues, feeds, tag feeds,
  site pages) in a fresh subprocess per run, into an empty public/ and an
  empty store. "in-process" time is measured inside the child around
  ``Pipeline(...)`` + ``build_all()``; wall time includes Python start-up;
* Hugo twice, into a fresh destination per run: **as shipped** (Hugo 0.111's
  default ``rssLimit`` is unlimited: every RSS feed carries every story) and
  **fair** (``rssLimit = 50``: our feeds carry the newest 50, so this is the
  equal work). Hugo is Debian's ``hugo`` package (``apt-get install hugo``);
  without it the Hugo columns say "absent" and only ours is measured;
* CPU seconds of each side from ``wait4`` (user + system of the process and
  its reaped children: our forked workers, Hugo's threads), shown per brief;
* peak memory, sampled every 20 ms as the sum of PSS over the whole process
  tree (PSS splits pages the workers share with the parent);
* edits: in a fresh process over the last cold build, first one edit of the
  newest story (a fresh process's first edit, reported alone), then
  ``--edits`` edits each of the newest story, one in the middle and the
  oldest, each appending a sentence to its summary and timed around
  ``sync([path])`` (the file event names it; quiet period 0): p50/p95/max;
* every measured command starts after an ``os.sync()`` (not timed), so no
  run pays for writing back the previous run's output.

Hugo runs at a size only if it fits: its peak per brief (measured at the
largest size so far in this run, else :data:`HUGO_BYTES_PER_BRIEF`) times N
must stay under half of ``MemAvailable`` (the machine is shared). Fair Hugo
took 2.1 GB at 10k and 5.8 GB at 30k, so 100k is usually skipped; the table
says so.

Targets (issue 17, this 2-core machine, ratios taken in one run): cold build
of 10k and 30k ≤ 0.75× fair Hugo in wall time and ≤ 1.0× in CPU; the 30k
build ≤ 3.1× the 10k build's CPU; 100k briefs within 400 MB peak PSS; an
edit republished with p95 ≤ 100 ms for the newest, a middle and the oldest
story.
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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import corpus  # noqa: E402
import common  # noqa: E402
from common import exclusive, pss_bytes, tree  # noqa: E402

WORK = ROOT / "bench" / ".work" / "build"
PYTHON = sys.executable
MB = 1024 * 1024
# Fair Hugo's peak PSS per brief at 30k (5.8 GB / 30k), when this run has not measured it yet.
HUGO_BYTES_PER_BRIEF = 200_000


def mem_available() -> int:
    """Bytes the kernel says can be allocated without swapping (MemAvailable)."""
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


# -- process-tree memory ----------------------------------------------------


@dataclass
class Measured:
    wall: float
    peak_tree: int  # bytes, sum of PSS over the process tree, sampled
    max_rss: int  # bytes, largest single process (wait4)
    cpu: float  # seconds, user + system of the process and its reaped children (wait4)
    sys: float  # seconds, the system (kernel) part of ``cpu``
    rc: int
    stdout: str
    stderr: str


def settle() -> None:
    """Write back every dirty page before a measured run, outside its timing.

    Without it each run started while the kernel was still writing back the
    previous run's output: our build followed Hugo as shipped (its every-story
    RSS files make the largest output of the three), fair Hugo followed ours,
    and each paid, in wall time and contention, for the other's write-back.
    Each run still writes back (or not) its own output as it goes.
    """
    os.sync()


def measure(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> Measured:
    """Run ``cmd`` from a settled page cache, sampling its process tree's PSS; wall time and peaks."""
    settle()
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
    cpu = usage.ru_utime + usage.ru_stime
    return Measured(wall, peak, usage.ru_maxrss * 1024, cpu, usage.ru_stime, proc.returncode, outs.get("out", ""), outs.get("err", ""))


# -- deferred deletion --------------------------------------------------------
#
# On an ext4 without a journal (this machine's root), creating a file skips
# every free inode of its group deleted in the last 60-300 s ("recently
# deleted", read from the inode table one by one), so a build that follows the
# removal of another build's 20,000 files paid up to 8 s more kernel CPU at
# 10k than the same build into a quiet filesystem, whichever side it was. Old
# outputs are therefore renamed into a trash folder (no inode is freed) and
# removed only after every measurement of the run.

TRASH = WORK / ".trash"
_trashed = 0


def discard(path: Path) -> None:
    """Set ``path`` aside for :func:`empty_trash` (a rename: cheap, frees nothing yet)."""
    global _trashed
    if not path.exists():
        return
    TRASH.mkdir(parents=True, exist_ok=True)
    _trashed += 1
    path.rename(TRASH / f"{os.getpid()}-{_trashed}-{path.name}")


REMOVED = WORK / ".removed-at"  # when a run last removed its outputs
QUIET_AFTER_REMOVAL = 300  # ext4 treats a freed inode as recently deleted for up to 300 s


def empty_trash() -> None:
    if TRASH.exists():
        t0 = time.perf_counter()
        shutil.rmtree(TRASH, ignore_errors=True)
        REMOVED.write_text(str(time.time()))
        print(f"  removed the run's old outputs in {time.perf_counter() - t0:.1f}s (after measuring)", file=sys.stderr)


def wait_out_last_removal() -> None:
    """A run started right after another run's removal would pay for it: wait until those inodes are old."""
    try:
        left = float(REMOVED.read_text()) + QUIET_AFTER_REMOVAL - time.time()
    except (OSError, ValueError):
        return
    if left > 0:
        print(f"  waiting {left:.0f}s: the last run removed its outputs {QUIET_AFTER_REMOVAL - left:.0f}s ago "
              "(files created before then would pay for the freed inodes)", file=sys.stderr)
        time.sleep(left)


# -- the corpus and configs -------------------------------------------------

FAIR_CONFIG = "config-fair.toml"


def fair_hugo_config() -> str:
    """The corpus's Hugo config with RSS feeds cut to the newest 50, as ours are."""
    text = corpus._HUGO_CONFIG
    assert "disableKinds = []" in text
    return text.replace("disableKinds = []", "disableKinds = []\nrssLimit = 50", 1)


def prepare(n: int, seed: int) -> Path:
    """bench/.work/build/n<N>: briefs/ and hugo/ for N stories (regenerated when the seed differs)."""
    base = WORK / f"n{n}"
    stamp = base / "corpus.json"
    want = {"n": n, "seed": seed, "version": 3}
    if stamp.exists() and json.loads(stamp.read_text()) == want:
        return base
    discard(base)
    t0 = time.perf_counter()
    corpus.write_briefs(base / "briefs", seed, n)
    corpus.write_hugo_site(base / "hugo", seed, n)
    (base / "hugo" / FAIR_CONFIG).write_text(fair_hugo_config(), encoding="utf-8")
    stamp.write_text(json.dumps(want))
    print(f"  generated {n} briefs and Hugo pages in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return base


def write_config(base: Path, run: str) -> Path:
    """A config whose public/ and state/ are fresh for this run."""
    out = base / run
    discard(out)
    return common.write_config(out, base / "briefs", extra="\n[schedule]\nquiet_period = 0.0\nwatch_events = false\n")


# -- child modes (run in a fresh interpreter) -------------------------------


def child_build(config_path: str) -> None:
    """What `publisher build` does: the first pass begun, then the pipeline imported and run."""
    from publisher import native
    from publisher.core import config
    from publisher.publish.heads import FirstPass
    from publisher.publish.workers import count

    cfg = config.load(config_path)
    t0 = time.perf_counter()
    first = FirstPass(cfg, count(None))
    from publisher import store
    from publisher.publish.pipeline import Pipeline

    engine = store.connect(cfg.store_url)
    result = Pipeline(cfg, engine).build_all(first=first)
    seconds = time.perf_counter() - t0
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)  # the parent: scan, recording, feeds, site pages
    print(json.dumps({"seconds": seconds, "published": len(result.published), "errors": result.errors[:5],
                      "n_errors": len(result.errors), "written": len(result.written),
                      "parent_cpu": own.ru_utime + own.ru_stime, "native": len(native.loaded())}))
    import gc

    gc.freeze()  # as `publisher build` does before it exits


def child_edits(config_path: str, edits: int) -> None:
    from publisher.core import config
    from publisher import store
    from publisher.publish.pipeline import Pipeline
    from publisher.store import stories

    cfg = config.load(config_path)
    engine = store.connect(cfg.store_url)
    pub = Pipeline(cfg, engine)
    t0 = time.perf_counter()
    first = pub.sync()  # nothing changed since the cold build: loads and compares the index
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pub.warm()  # as the service does after its first scan
    warm_s = time.perf_counter() - t0
    idle = []
    for _ in range(3):
        t0 = time.perf_counter()
        pub.sync()
        idle.append(time.perf_counter() - t0)
    with engine.connect() as conn:
        refs = stories.newest(conn, None, None)
    targets = {"newest": refs[0].path, "middle": refs[len(refs) // 2].path, "oldest": refs[-1].path}
    missed = 0
    counter = 0

    def edit(rel: str) -> tuple[float, int]:
        nonlocal missed, counter
        counter += 1
        path = cfg.paths.briefs / rel
        text = path.read_text(encoding="utf-8")
        path.write_text(corpus.append_to_summary(text, f"Edit {counter} at {time.time_ns()} added this sentence."), encoding="utf-8")
        t0 = time.perf_counter()
        result = pub.sync([rel])  # as the service does when the file event names it
        took = time.perf_counter() - t0
        if not result.published:
            missed += 1
        return took, len(result.written)

    first_edit = edit(targets["newest"])
    series: dict[str, list[tuple[float, int]]] = {k: [] for k in targets}
    for _ in range(edits):
        for kind, rel in targets.items():  # interleaved, so load bursts hit all three
            series[kind].append(edit(rel))
    print(json.dumps({"first": first_s, "warm": warm_s, "first_changed": first.changed, "idle": idle, "first_edit": first_edit,
                      "series": series, "missed": missed}))


# -- the table ---------------------------------------------------------------


@dataclass
class Row:
    size: int
    what: str
    ours: str
    fair: str = ""
    shipped: str = ""
    ratio: str = ""
    target: str = ""
    verdict: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    cpu: dict[int, float] = field(default_factory=dict)  # our median cold-build CPU seconds by size
    hugo_per_brief: float = HUGO_BYTES_PER_BRIEF  # fair Hugo's peak bytes per brief, largest size measured
    notes: list[str] = field(default_factory=list)

    def add(self, *args: object, **kw: object) -> None:
        self.rows.append(Row(*args, **kw))  # type: ignore[arg-type]

    def print(self) -> None:
        head = ("N", "measure", "ours", "fair Hugo", "Hugo as shipped", "ours/fair", "target", "")
        cells = [head] + [(f"{r.size:,}", r.what, r.ours, r.fair, r.shipped, r.ratio, r.target, r.verdict) for r in self.rows]
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" for _ in head) + "|")
        for c in cells[1:]:
            print("| " + " | ".join(c) + " |")
        for note in self.notes:
            print(f"\n{note}")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def pct(values: list[float], q: float) -> float:
    """The q-quantile by the nearest-rank rule (p95 of 20 is the 19th)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def run_hugo(hugo: str, base: Path, dest: Path, config: str) -> Measured:
    discard(dest)
    h = measure([hugo, "--quiet", "--source", str(base / "hugo"), "--destination", str(dest), "--config", str(base / "hugo" / config)])
    if h.rc != 0:
        sys.exit(f"hugo failed (rc {h.rc}):\n{h.stderr[-3000:]}")
    discard(dest)
    return h


def hugo_fits(n: int, report: Report) -> bool:
    """Whether Hugo at ``n`` briefs should fit in half the memory available now (else it is skipped, and said)."""
    need, have = report.hugo_per_brief * n, mem_available()
    if need <= have / 2:
        return True
    report.notes.append(
        f"Hugo at {n:,} briefs not run: it would need about {need / 2**30:.1f} GB "
        f"({report.hugo_per_brief / 1000:.0f} KB per brief), and half of MemAvailable is {have / 2**31:.1f} GB."
    )
    return False


def bench_size(n: int, args: argparse.Namespace, report: Report) -> None:
    print(f"N={n}", file=sys.stderr)
    base = prepare(n, args.seed)
    hugo = shutil.which("hugo") if not args.no_hugo else None
    if hugo and not hugo_fits(n, report):
        hugo = None
    ours: list[tuple[float, Measured]] = []
    parent_cpu: list[float] = []
    fair: list[Measured] = []
    shipped: list[Measured] = []
    cfg = base / "cold-0" / "config.toml"
    for r in range(args.repeat):
        cfg = write_config(base, f"cold-{r}")
        m = measure([PYTHON, __file__, "--child-build", str(cfg)], cwd=ROOT)
        if m.rc != 0:
            sys.exit(f"our build failed (rc {m.rc}):\n{m.stderr[-3000:]}")
        info = json.loads(m.stdout.strip().splitlines()[-1])
        if info["n_errors"]:
            print(f"  warning: {info['n_errors']} briefs rejected, e.g. {info['errors'][:2]}", file=sys.stderr)
        ours.append((info["seconds"], m))
        parent_cpu.append(info["parent_cpu"])
        print(f"  ours run {r}: {info['seconds']:.2f}s in-process, {m.wall:.2f}s wall, {m.cpu:.1f}s CPU ({m.sys:.1f} sys), "
              f"peak {m.peak_tree / MB:.0f} MB tree PSS, {info['published']} published, {info['written']} files, "
              f"{info['native']} compiled modules", file=sys.stderr)
        if hugo:
            for name, config, runs in (("fair", FAIR_CONFIG, fair), ("shipped", "config.toml", shipped)):
                h = run_hugo(hugo, base, base / f"hugo-out-{r}", config)
                runs.append(h)
                print(f"  hugo {name} run {r}: {h.wall:.2f}s wall, {h.cpu:.1f}s CPU ({h.sys:.1f} sys), peak {h.peak_tree / MB:.0f} MB", file=sys.stderr)

    big = n >= 10_000
    med = statistics.median
    ours_t, ours_wall = med(s for s, _ in ours), med(m.wall for _, m in ours)
    ours_cpu, ours_mem = med(m.cpu for _, m in ours), max(m.peak_tree for _, m in ours)
    report.cpu[n] = ours_cpu
    parent_ms = med(parent_cpu) / n * 1000
    if hugo:
        report.hugo_per_brief = max(h.peak_tree for h in fair + shipped) / n
        fw, sw = med(h.wall for h in fair), med(h.wall for h in shipped)
        fc, sc = med(h.cpu for h in fair), med(h.cpu for h in shipped)
        fm, sm = max(h.peak_tree for h in fair), max(h.peak_tree for h in shipped)
        report.add(n, "cold build, wall s", f"{ours_wall:.2f}", f"{fw:.2f}", f"{sw:.2f}", f"{ours_wall / fw:.2f}",
                   "≤ 0.75" if big else "", verdict(ours_wall / fw <= 0.75) if big else "")
        report.add(n, "  ours in-process (from the config loaded), s", f"{ours_t:.2f}", "", "", f"{ours_t / fw:.2f}")
        report.add(n, "cold build, CPU s", f"{ours_cpu:.1f}", f"{fc:.1f}", f"{sc:.1f}", f"{ours_cpu / fc:.2f}",
                   "≤ 1.0" if big else "", verdict(ours_cpu / fc <= 1.0) if big else "")
        report.add(n, "  CPU ms per brief", f"{ours_cpu / n * 1000:.2f}", f"{fc / n * 1000:.2f}", f"{sc / n * 1000:.2f}")
        report.add(n, "  of which kernel (system) CPU s", f"{med(m.sys for _, m in ours):.1f}", f"{med(h.sys for h in fair):.1f}",
                   f"{med(h.sys for h in shipped):.1f}")
        report.add(n, "    of which our parent process", f"{parent_ms:.2f}")
        report.add(n, "peak memory, MB (tree PSS)", f"{ours_mem / MB:.0f}", f"{fm / MB:.0f}", f"{sm / MB:.0f}", f"{ours_mem / fm:.2f}")
    else:
        why = "not run" if shutil.which("hugo") else "absent"
        report.add(n, "cold build, wall s", f"{ours_wall:.2f}", why, why)
        report.add(n, "  ours in-process (from the config loaded), s", f"{ours_t:.2f}")
        report.add(n, "cold build, CPU s", f"{ours_cpu:.1f}", why, why)
        report.add(n, "  CPU ms per brief", f"{ours_cpu / n * 1000:.2f}")
        report.add(n, "  of which kernel (system) CPU s", f"{med(m.sys for _, m in ours):.1f}")
        report.add(n, "    of which our parent process", f"{parent_ms:.2f}")
        report.add(n, "peak memory, MB (tree PSS)", f"{ours_mem / MB:.0f}", why, why)
    if n >= 100_000:
        report.add(n, "peak memory within 400 MB (tree PSS)", f"{ours_mem / MB:.0f}", "", "", "", "≤ 400 MB", verdict(ours_mem <= 400 * MB))
    if n == 30_000 and 10_000 in report.cpu:
        growth = ours_cpu / report.cpu[10_000]
        report.add(n, "CPU of 30k / CPU of 10k", f"{growth:.2f}", "", "", "", "≤ 3.1", verdict(growth <= 3.1))

    if args.edits > 0:
        edits(n, base, cfg, args, report)
    if not args.keep:
        for r in range(args.repeat):
            discard(base / f"cold-{r}")


def edits(n: int, base: Path, cfg: Path, args: argparse.Namespace, report: Report) -> None:
    """Timed edits of the newest, a middle and the oldest story over the last cold build's state."""
    # The edits run over the state of the last cold build.
    m = measure([PYTHON, __file__, "--child-edits", str(cfg), "--edits", str(args.edits)], cwd=ROOT)
    if m.rc != 0:
        sys.exit(f"edit run failed (rc {m.rc}):\n{m.stderr[-3000:]}")
    info = json.loads(m.stdout.strip().splitlines()[-1])
    first_ms, first_files = info["first_edit"]
    report.add(n, "first edit in a fresh process, after its warm-up (newest story), ms", f"{first_ms * 1000:.0f} ({first_files} files)")
    for kind, runs in info["series"].items():
        ms = [t * 1000 for t, _ in runs]
        files = statistics.median(w for _, w in runs)
        p95 = pct(ms, 0.95)
        report.add(n, f"edit of the {kind} story, p50/p95/max ms (of {len(ms)}; files written)",
                   f"{pct(ms, 0.5):.0f} / {p95:.0f} / {max(ms):.0f} ({files:.0f} files)", "", "", "",
                   "p95 ≤ 100", verdict(p95 <= 100 and not info["missed"]))
    report.add(n, "sync with nothing changed, ms", f"{statistics.median(info['idle']) * 1000:.0f}")
    report.add(n, "first sync of a new process, then its warm-up (as `publisher run` starts), ms",
               f"{info['first'] * 1000:.0f}, {info['warm'] * 1000:.0f}")
    if info["missed"]:
        print(f"  warning: {info['missed']} edits were not published by the sync after them", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000,30000,100000", help="comma-separated brief counts")
    ap.add_argument("--no-hugo", action="store_true", help="measure ours only (e.g. a memory check at 100k)")
    ap.add_argument("--repeat", type=int, default=3, help="cold builds per side (median)")
    ap.add_argument("--edits", type=int, default=20, help="timed edits of each of the newest, a middle and the oldest story")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the build outputs under bench/.work/build")
    ap.add_argument("--child-build", metavar="CONFIG", help=argparse.SUPPRESS)
    ap.add_argument("--child-edits", metavar="CONFIG", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_build:
        return child_build(args.child_build)
    if args.child_edits:
        return child_edits(args.child_edits, args.edits)
    hugo = shutil.which("hugo")
    if not hugo and not args.no_hugo:
        print("note: hugo is absent (Debian: apt-get install hugo); measuring ours only", file=sys.stderr)
    version = subprocess.run([hugo, "version"], capture_output=True, text=True).stdout.split()[1] if hugo else "absent"
    lock = exclusive(WORK / "run.lock")  # noqa: F841  (held until exit)
    report = Report()
    wait_out_last_removal()
    try:
        for n in [int(x) for x in args.sizes.split(",") if x]:
            bench_size(n, args, report)
    finally:
        empty_trash()
    load = os.getloadavg()
    from publisher import native

    # What the children ran: the compiled parser and renderers (make native) or plain Python.
    ran = native.check()
    print(f"\nbuild benchmark: {os.cpu_count()} cores, repeat {args.repeat}, hugo {version}, "
          f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"ours {'compiled' if ran.active else 'plain Python'}: {ran.reason}")
    report.print()


if __name__ == "__main__":
    main()
