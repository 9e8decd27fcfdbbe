#!/usr/bin/env python3
"""Scale-out on PostgreSQL: N ``publisher worker`` processes against Postfix's smtp-sink, and enqueue time.

Run from the repository root:
  .venv/bin/python bench/bench_scale.py [--n 20000] [--repeat 3] [--workers 1,2,4] [--enqueue 100000,1000000]

In one run, on a throwaway PostgreSQL 15 (tests/support/postgres.py) and one
``smtp-sink``, ``--repeat`` rounds of:

* ``smtp-source -d -s10`` against the sink, with messages of our size and
  sessions reused as our workers reuse them (equal work): the round's
  anchor, the ceiling of the sink on this machine at that moment;
* 1, 2 and 4 ``publisher worker --until-idle`` processes sending one issue
  (the reference brief, 29.7 KB per message) to ``--n`` readers: messages
  per second over the processes' wall time (start-up, about 2 s of imports
  per process, and the enqueue included), each as a ratio to its own
  round's smtp-source; beside it the same ratio over the ledger's first
  claim to last send (no start-up);
* one worker in this process with its ledger calls timed: the share of its
  wall time the sending thread spends in them (claim, mark sent/failed,
  release, progress: the send path waits on these), and the claim
  statements' own time on either thread (a claim taken ahead runs beside
  the send).

Then enqueue time: ``start_issue`` (one ``INSERT … SELECT``) for each size in
``--enqueue``, and the projected send time of that audience at a relay rate
(``--relay`` msg/s) and at the rate measured with 2 workers. The 1-minute
load average is printed before and after each round.

The machine has 2 cores shared by the sink, the workers, PostgreSQL and
other people's work: compare ratios within one round, not numbers across
runs or machines. Results: bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_send import ensure_postfix_tools, payload_size, postfix_sink, smtp_source  # noqa: E402

from tests.support import postgres  # noqa: E402

T0_SQL = "2026-11-28 12:00:00+00"


def load_subscribers(url: str, n: int) -> float:
    """``n`` active instant readers by COPY; seconds."""
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    start = time.perf_counter()
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE deliveries, subscribers RESTART IDENTITY CASCADE")
        with cur.copy("COPY subscribers (email, status, cadence, bounces, created_at, confirmed_at) FROM STDIN") as copy:
            buf = io.StringIO()
            for i in range(n):
                buf.write(f"reader{i:07d}@example.net\tactive\tinstant\t0\t{T0_SQL}\t{T0_SQL}\n")
                if i % 50_000 == 49_999:
                    copy.write(buf.getvalue())
                    buf = io.StringIO()
            copy.write(buf.getvalue())
        cur.execute("ANALYZE subscribers")
    return time.perf_counter() - start


def new_issue(engine: object, cfg: object) -> int:
    from tests.support.smtp import add_story_issue

    import sqlalchemy as sa

    from publisher.store.schema import deliveries, issue_events, issues

    with engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(sa.delete(deliveries))
        conn.execute(sa.delete(issue_events))
        conn.execute(sa.delete(issues))
    return add_story_issue(engine, cfg)  # type: ignore[arg-type]


def write_config(folder: Path, port: int) -> Path:
    path = folder / "config.toml"
    path.write_text(
        f'[site]\nbase_url = "https://news.example.org/"\n[email]\nsender_address = "briefs@news.example.org"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\nconnections = 4\nbatch_size = 200\n'
        f"[delivery]\nlease = 30.0\n",
        encoding="utf-8",
    )
    return path


def run_workers(cfg_path: Path, n_workers: int, url: str) -> float:
    env = {**os.environ, "PUBLISHER_SIGNING_KEY": "k" * 40, "PUBLISHER_STORE_URL": url}
    start = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, "-c", "from publisher.cli import main; main()", "worker", "--until-idle",
                          "--config", str(cfg_path)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(n_workers)
    ]
    for p in procs:
        _out, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"a worker exited {p.returncode}: {err.decode(errors='replace')[-3000:]}")
    return time.perf_counter() - start


def query_share(cfg_path: Path, url: str) -> tuple[dict[str, float], float]:
    """One worker in this process with its ledger calls timed: (share of wall time by kind, wall seconds)."""
    from publisher.core import config as config_mod
    from publisher.delivery.worker import Worker
    from publisher.store import connect
    from publisher.store import workers as workers_store

    # claim/mark/progress: the sender thread's time in the source's calls (the send path waits on these);
    # statements: the claim statements themselves, on whichever thread (the claim ahead runs beside the send).
    spent = {"claim": 0.0, "mark": 0.0, "progress": 0.0, "statements": 0.0}
    originals = {}

    def timed(name: str) -> None:
        original = originals[name] = getattr(workers_store.WorkerSource, name)
        kind = {"claim": "claim", "next_retry": "claim", "progress": "progress", "_claim_now": "statements"}.get(name, "mark")

        def wrapper(self: object, *a: object, **kw: object) -> object:
            t = time.perf_counter()
            try:
                return original(self, *a, **kw)
            finally:
                spent[kind] += time.perf_counter() - t

        setattr(workers_store.WorkerSource, name, wrapper)

    for name in ("claim", "mark_sent", "mark_failed", "mark_unknown", "release", "progress", "next_retry", "_claim_now"):
        timed(name)
    os.environ["PUBLISHER_STORE_URL"] = url
    os.environ.setdefault("PUBLISHER_SIGNING_KEY", "k" * 40)
    cfg = config_mod.load(cfg_path)
    engine = connect(url)
    worker = Worker(cfg, engine, poll=0.2)
    start = time.perf_counter()
    try:
        worker.run(until_idle=True)
    finally:
        for name, original in originals.items():
            setattr(workers_store.WorkerSource, name, original)
        engine.dispose()
    wall = time.perf_counter() - start
    return {k: v / wall for k, v in spent.items()}, wall


@contextlib.contextmanager
def pg() -> Iterator[postgres.PgServer]:
    gen = postgres.start_server()
    server = next(gen)
    try:
        yield server
    finally:
        with contextlib.suppress(StopIteration):
            next(gen)


def send_span(engine: object) -> float:
    """Seconds from the first claim to the last accepted message, from the ledger (no process start-up)."""
    import sqlalchemy as sa

    from publisher.store.schema import deliveries

    with engine.connect() as conn:  # type: ignore[attr-defined]
        first, last = conn.execute(sa.select(sa.func.min(deliveries.c.claimed_at), sa.func.max(deliveries.c.sent_at))).one()
    return float((last - first).total_seconds())


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def measure(args: argparse.Namespace, tools: str, port: int, engine: object, cfg: object, cfg_path: Path, url: str,
            rows: list[tuple[str, str]]) -> tuple[dict[int, float], list[dict[str, float]]]:
    """Rounds of smtp-source, then 1, 2, 4 workers, then the in-process share; each worker rate is taken as a
    ratio to the smtp-source run of its own round (the machine's load moves between rounds)."""
    counts = [int(w) for w in args.workers.split(",")]
    ratios: dict[int, list[float]] = {w: [] for w in counts}
    span_ratios: dict[int, list[float]] = {w: [] for w in counts}
    rates: dict[int, list[float]] = {w: [] for w in counts}
    sources: list[float] = []
    shares: list[dict[str, float]] = []
    loads: list[float] = []
    size = payload_size(engine, cfg, new_issue(engine, cfg))
    for _round in range(args.repeat):
        loads.append(os.getloadavg()[0])
        # Equal work: the anchor sends messages of our size over reused sessions (-d), as our workers do.
        ceiling = smtp_source(tools, port, args.n, size, 10)["rate"]
        sources.append(ceiling)
        for n_workers in counts:
            new_issue(engine, cfg)
            took = run_workers(cfg_path, n_workers, url)
            rates[n_workers].append(args.n / took)
            ratios[n_workers].append(args.n / took / ceiling)
            span_ratios[n_workers].append(args.n / send_span(engine) / ceiling)
        new_issue(engine, cfg)
        share, wall = query_share(cfg_path, url)
        shares.append({**share, "wall": wall})
        loads.append(os.getloadavg()[0])
    rows.append((f"load average (1 min) during the {args.repeat} rounds", " ".join(f"{x:.1f}" for x in loads)))
    rows.append((f"smtp-source -d -s10, {size / 1000:.1f} KB (our message's size), per round",
                 " ".join(f"{x:,.0f}" for x in sources) + " msg/s"))
    for n_workers in counts:
        rs = ratios[n_workers]
        rows.append((f"{n_workers} worker(s), {args.n:,} readers",
                     f"{_median(rates[n_workers]):,.0f} msg/s; of its round's smtp-source: median {_median(rs):.0%} "
                     f"({' '.join(f'{r:.0%}' for r in rs)}); first claim to last send: {_median(span_ratios[n_workers]):.0%}"))
    claim_mark = [s["claim"] + s["mark"] for s in shares]
    best = sorted(shares, key=lambda s: s["claim"] + s["mark"])[len(shares) // 2]
    rows.append(("ledger queries' share of 1 worker's wall time",
                 f"median {_median(claim_mark):.1%} (rounds: {' '.join(f'{x:.1%}' for x in claim_mark)}); "
                 f"median round: claim {best['claim']:.1%} + mark {best['mark']:.1%}, progress {best['progress']:.1%} "
                 f"of {best['wall']:.1f}s"))
    rows.append(("  claim statements on either thread (with the claim ahead)",
                 " ".join(f"{s['statements']:.1%}" for s in shares) + " of wall time"))
    return {w: _median(r) for w, r in rates.items()}, shares


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--enqueue", default="100000,1000000")
    parser.add_argument("--relay", type=float, default=50.0, help="relay rate for the projection (msg/s)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of smtp-source, 1, 2, 4 workers, the share")
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    if not postgres.available():
        sys.exit("PostgreSQL 15 binaries or psycopg missing (see .ci/run)")
    tools = ensure_postfix_tools()
    from publisher.store import connect
    from publisher.store import issues as issues_store
    from tests.support.smtp import make_cfg

    rows: list[tuple[str, str]] = []
    with pg() as server, postfix_sink(tools) as port, tempfile.TemporaryDirectory() as tmp:
        url = server.create_database("bench")
        os.environ["PUBLISHER_STORE_URL"] = url
        cfg = make_cfg(Path(tmp))
        engine = connect(url)
        cfg_path = write_config(Path(tmp), port)
        load_subscribers(url, args.n)
        rates, _shares = measure(args, tools, port, engine, cfg, cfg_path, url, rows)
        at = 2 if 2 in rates else max(rates)
        for size in (int(s) for s in args.enqueue.split(",") if s):
            loaded = load_subscribers(url, size)
            issue_id = new_issue(engine, cfg)
            start = time.perf_counter()
            _issue, created = issues_store.start_issue(engine, issue_id, now=_now())
            took = time.perf_counter() - start
            assert created == size, (created, size)
            rows.append((f"enqueue {size:,} (INSERT … SELECT)", f"{took:.1f}s (COPY of the readers {loaded:.1f}s)"))
            rows.append((f"  projected send of {size:,}",
                         f"{size / args.relay / 3600:.1f} h at a {args.relay:g} msg/s relay; "
                         f"{size / rates[at] / 60:.1f} min at {at} workers' measured rate"))
    width = max(len(k) for k, _ in rows)
    print(f"\n{'what':<{width}}  result")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


if __name__ == "__main__":
    main()
