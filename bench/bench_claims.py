#!/usr/bin/env python3
"""Cost of each ledger claim over one whole send on PostgreSQL: does it grow as the send goes on, or with the audience?

Run from the repository root:  .venv/bin/python bench/bench_claims.py [--n 100000] [--batch 200]

On a throwaway PostgreSQL (tests/support/postgres.py): ``--n`` readers by
COPY, one issue enqueued (``start_issue``, one ``INSERT … SELECT``), then
one claimer takes the whole ledger in batches of ``--batch``, each claim
also marking the previous batch sent (a worker's steady state, one
statement). Prints the mean claim time per tenth of the send: every claim
moves rows out of ``queued``, so a plan that walked past their old index
entries would show as a rising column.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_scale  # noqa: E402

from tests.support import postgres  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    if not postgres.available():
        sys.exit("PostgreSQL 15 binaries or psycopg missing (see .ci/run)")
    from publisher.store import connect
    from publisher.store import deliveries, issues
    from tests.support.smtp import make_cfg

    with bench_scale.pg() as server, tempfile.TemporaryDirectory() as tmp:
        url = server.create_database("claims")
        os.environ["PUBLISHER_STORE_URL"] = url
        cfg = make_cfg(Path(tmp))
        engine = connect(url)
        bench_scale.load_subscribers(url, args.n)
        issue_id = bench_scale.new_issue(engine, cfg)
        now = bench_scale._now()
        issues.start_issue(engine, issue_id, now=now)
        times: list[float] = []
        held: list[int] = []
        while True:
            start = time.perf_counter()
            got = deliveries.claim(engine, issue_id, "bench#1", args.batch, now=now, sent=held, sent_at=now)
            times.append(time.perf_counter() - start)
            if not got:
                break
            held = [c.delivery_id for c in got]
    tenth = max(1, -(-len(times) // 10))  # ceil: ten parts at most
    print(f"\n{args.n:,} readers, {len(times) - 1:,} claims of {args.batch}; load average {os.getloadavg()[0]:.1f}")
    print("| part of the send | claims | mean ms per claim |\n|---|---|---|")
    for i in range(0, len(times), tenth):
        part = times[i:i + tenth]
        print(f"| {i // tenth + 1} / 10 | {i:,}–{i + len(part):,} | {1000 * sum(part) / len(part):.2f} |")


if __name__ == "__main__":
    main()
