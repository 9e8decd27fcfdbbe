#!/usr/bin/env python3
"""Sending throughput, CPU per message and peak memory of ``publisher.delivery`` against Postfix's smtp-sink.

Run from the repository root:
    .venv/bin/python bench/bench_send.py [--n 10000] [--rounds 3] [--connections 4] [--memory 10000,100000,1000000]

The ceiling is Postfix's ``smtp-source -d`` (sessions reused, as our sender
reuses them) sending messages of our size to the same ``smtp-sink``. In each
round, interleaved, against that one sink:

* ``smtp-source -d`` with 1 and with N sessions,
* our sender (``send_issue``: ledger claims, rate limiter, compiled wire
  payloads, pipelined transactions, every row recorded) with 1 and N
  connections, unsigned, and with N connections DKIM-signed (RSA-2048, Ed25519).

Each figure: msg/s, CPU ms per message (``getrusage`` of the sending
process: smtp-source as our child, our sender in a fresh subprocess timing
only ``send_issue``), the share of that CPU spent in the ledger (claims and
records, SQL), the ratio to the ceiling with the same number of sessions in
the same round, and the 1-minute load average. The table gives the median
over rounds with the range.

Memory: peak RSS (``ru_maxrss``) of a fresh sender process sending to 10k,
100k and 1M subscribers (``--memory``). Sizes above ``--cap`` have their whole
ledger enqueued (every row) but send only the first ``--cap`` messages, so
the 1M figure does not take a quarter of an hour on a shared box; what a send
holds does not depend on how many rows it has already sent (the 10k and 100k
rows send everything, which shows it).

Postfix is installed with apt if ``smtp-sink`` is missing. Numbers vary with
the machine's load: compare the ratios within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from common import free_port  # noqa: E402
sys.path.insert(0, str(ROOT))

SENDER = "briefs@news.example.org"


def wait_port(port: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def ensure_postfix_tools() -> str:
    found = shutil.which("smtp-sink") or ("/usr/sbin/smtp-sink" if Path("/usr/sbin/smtp-sink").exists() else None)
    if found:
        return str(Path(found).parent)
    print("smtp-sink missing: installing postfix with apt-get", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "postfix"], check=True, env=env)
    return "/usr/sbin"


@contextlib.contextmanager
def postfix_sink(tools: str) -> Iterator[int]:
    port = free_port()
    cmd = [f"{tools}/smtp-sink"]
    if os.geteuid() == 0:
        cmd += ["-u", "nobody"]
    cmd += ["-m", "256", f"127.0.0.1:{port}", "1024"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def smtp_source(tools: str, port: int, n: int, size: int, sessions: int) -> dict[str, float]:
    """``smtp-source -d``: sessions reused; CPU from our children's rusage (it is the only child running)."""
    cmd = [
        f"{tools}/smtp-source", "-d", "-s", str(sessions), "-m", str(n), "-l", str(size),
        "-f", SENDER, "-t", "reader@example.net", f"127.0.0.1:{port}",
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"rate": n / elapsed, "cpu_ms": cpu * 1000 / n, "ledger_ms": 0.0}


# ------------------------------------------------------------ the sender side


def prepare(workdir: Path, n: int) -> tuple[Path, int, int]:
    """A store with ``n`` instant subscribers and one approved story issue (the reference brief);
    returns the folder, the issue id and the size of one reader's DATA payload."""
    from publisher.store import connect
    from tests.support.smtp import add_story_issue, add_subscribers, make_cfg

    cfg = make_cfg(workdir)
    engine = connect(cfg.store_url)
    for start in range(0, n, 100_000):
        add_subscribers(engine, min(100_000, n - start), start=start)
    issue_id = add_story_issue(engine, cfg)
    size = payload_size(engine, cfg, issue_id)
    engine.dispose()
    return workdir, issue_id, size


def payload_size(engine: object, cfg: object, issue_id: int) -> int:
    """Octets of one reader's DATA payload of the issue (what the smtp-source anchor sends, for equal work)."""
    from publisher.core.clock import system_clock
    from publisher.delivery import send as delivery
    from publisher.mail.wire import WireMessage
    from publisher.store import issues as issues_store

    template = delivery.build_template(issues_store.get_issue(engine, issue_id), cfg, sent_at=system_clock())  # type: ignore[arg-type]
    return len(WireMessage(template).personalize(
        to="reader000001@example.net", unsubscribe_url=cfg.site.url("unsubscribe?t=1.abcdef.") + "x" * 43,  # type: ignore[attr-defined]
        message_id="<1.1.0123456789ab@news.example.org>",
    ))


def write_key(workdir: Path, kind: str) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa" else ed25519.Ed25519PrivateKey.generate()
    path = workdir / f"dkim-{kind}.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return path


def run_sender(workdir: Path, issue_id: int, port: int, connections: int, dkim: str = "none", cap: int = 0) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", str(workdir), str(issue_id), str(port), str(connections), dkim, str(cap)],
        check=True, capture_output=True, text=True, env={**os.environ, "PUBLISHER_SIGNING_KEY": "b" * 40},
    )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def worker(workdir: Path, issue_id: int, port: int, connections: int, dkim: str, cap: int) -> None:
    import dataclasses

    import sqlalchemy as sa

    from publisher.delivery import send as delivery
    from publisher.delivery import sender as sender_module
    from publisher.store import connect
    from publisher.store.deliveries import LedgerSource
    from publisher.store.schema import deliveries, issues
    from tests.support.smtp import make_cfg

    ledger_cpu = [0.0]
    claimed = [0]

    class Timed(LedgerSource):
        """The real ledger, timing its calls (thread CPU); with ``cap``, it stops handing out rows after that many."""

        def claim(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            if cap and claimed[0] >= cap:
                return []
            t = time.thread_time()
            rows = super().claim(*args, **kwargs)
            ledger_cpu[0] += time.thread_time() - t
            claimed[0] += len(rows)
            return rows

        def mark_sent(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            t = time.thread_time()
            super().mark_sent(*args, **kwargs)
            ledger_cpu[0] += time.thread_time() - t

    setattr(sender_module, "LedgerSource", Timed)  # the sender's default source, timed
    cfg = make_cfg(workdir, port=port, connections=connections, batch_size=200)
    if dkim != "none":
        key = write_key(workdir, dkim)
        cfg = dataclasses.replace(cfg, dkim=dataclasses.replace(cfg.dkim, domain="news.example.org", selector="b", private_key=str(key)))
    engine = connect(cfg.store_url)
    with engine.begin() as conn:  # every run starts from a fresh, approved issue
        conn.execute(deliveries.delete())
        conn.execute(issues.update().values(state="approved"))
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    report = delivery.send_issue(cfg, engine, issue_id, wait=not cap)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    with engine.connect() as conn:
        sent = conn.execute(sa.select(sa.func.count()).where(deliveries.c.state == "sent")).scalar_one()
        rows = conn.execute(sa.select(sa.func.count()).select_from(deliveries)).scalar_one()
    print(json.dumps({"sent": sent, "rows": rows, "reported": report.sent, "rate": sent / elapsed,
                      "cpu_ms": cpu * 1000 / max(sent, 1), "ledger_ms": ledger_cpu[0] * 1000 / max(sent, 1),
                      "peak_mb": after.ru_maxrss / 1024}))


# ------------------------------------------------------------------ report


@dataclass
class Series:
    what: str
    sessions: int
    runs: list[dict[str, float]] = field(default_factory=list)

    def med(self, key: str) -> float:
        return statistics.median(r[key] for r in self.runs)

    def span(self, key: str, fmt: str) -> str:
        values = [r[key] for r in self.runs]
        return f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="subscribers for the throughput runs")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions")
    ap.add_argument("--connections", type=int, default=4, help="N for the parallel runs")
    ap.add_argument("--memory", default="10000,100000,1000000", help="subscriber counts for peak RSS ('' to skip)")
    ap.add_argument("--cap", type=int, default=100_000, help="messages sent at most in a memory run (0: all)")
    ap.add_argument("--no-dkim", action="store_true", help="leave out the signed rows")
    ap.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        w = args.worker
        worker(Path(w[0]), int(w[1]), int(w[2]), int(w[3]), w[4], int(w[5]))
        return

    tools = ensure_postfix_tools()
    n_conn = args.connections
    plan: list[tuple[str, int, str]] = [
        ("smtp-source -d", 1, ""), ("publisher, unsigned", 1, "none"),
        ("smtp-source -d", n_conn, ""), ("publisher, unsigned", n_conn, "none"),
    ]
    if not args.no_dkim:
        plan += [("publisher, DKIM rsa-sha256", n_conn, "rsa"), ("publisher, DKIM ed25519-sha256", n_conn, "ed25519")]
    series = {(what, sessions): Series(what, sessions) for what, sessions, _ in plan}
    memory: list[tuple[int, dict[str, float]]] = []
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-send-") as tmp:
        small, issue_small, size = prepare(Path(tmp) / "small", args.n)
        with postfix_sink(tools) as port:
            for r in range(args.rounds):
                for what, sessions, dkim in plan:
                    loads.append(os.getloadavg()[0])
                    got = (smtp_source(tools, port, args.n, size, sessions) if not dkim
                           else run_sender(small, issue_small, port, sessions, dkim))
                    got["load"] = loads[-1]
                    series[(what, sessions)].runs.append(got)
                    print(f"round {r + 1}: {what} x{sessions}: {got['rate']:.0f} msg/s, {got['cpu_ms']:.3f} ms CPU/msg, "
                          f"load {got['load']:.2f}", file=sys.stderr, flush=True)
            for count in [int(x) for x in args.memory.split(",") if x]:
                where, issue, _ = (small, issue_small, size) if count == args.n else prepare(Path(tmp) / f"m{count}", count)
                cap = args.cap if args.cap and count > args.cap else 0
                got = run_sender(where, issue, port, n_conn, cap=cap)
                got["load"] = os.getloadavg()[0]
                memory.append((count, got))
                print(f"memory {count}: {got['peak_mb']:.1f} MB, {got['sent']:.0f} sent", file=sys.stderr, flush=True)

    if loads:
        print(f"\n{args.n:,} subscribers, DATA payload {size:,} bytes, {os.cpu_count()} CPUs, {args.rounds} interleaved "
              f"rounds, load (1 min) {min(loads):.2f}–{max(loads):.2f}; median (min–max)\n")
        print("| sender | sessions | msg/s | CPU ms/msg | of which ledger | ratio to smtp-source -d (same round) | load |")
        print("|---|---|---|---|---|---|---|")
    for (what, sessions), s in series.items() if loads else ():
        ceiling = series[("smtp-source -d", sessions)]
        ratios = [mine["rate"] / top["rate"] for mine, top in zip(s.runs, ceiling.runs)]
        ratio = "" if what.startswith("smtp-source") else (
            f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})")
        ledger = "" if what.startswith("smtp-source") else s.span("ledger_ms", ".3f")
        print(f"| {what} | {sessions} | {s.span('rate', '.0f')} | {s.span('cpu_ms', '.3f')} | {ledger} | {ratio} | "
              f"{s.span('load', '.1f')} |")
    if memory:
        print("\n| subscribers | ledger rows | sent | peak RSS MB | msg/s | load |")
        print("|---|---|---|---|---|---|")
        for count, got in memory:
            print(f"| {count:,} | {got['rows']:,.0f} | {got['sent']:,.0f} | {got['peak_mb']:.1f} | {got['rate']:.0f} | "
                  f"{got['load']:.1f} |")


if __name__ == "__main__":
    main()
