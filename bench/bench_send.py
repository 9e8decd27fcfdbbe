#!/usr/bin/env python3
"""Sending throughput and peak memory of ``publisher.delivery`` against local SMTP sinks.

Run from the repository root:  .venv/bin/python bench/bench_send.py [--n 10000] [--big 100000]

For each sink (an aiosmtpd server that only counts, in its own process, and
Postfix's ``smtp-sink``) it measures in one run:

* ``smtp-source`` sending the same number of messages of the same size
  (the ceiling of the sink on this machine),
* our sender (``send_issue``: ledger claims, rate limiter, byte-substitution
  templates, records every row) with 1 and with N connections,
* the same N-connection send DKIM-signed, with an RSA-2048 and an Ed25519 key
  (``--skip-unsigned`` measures only those rows, against smtp-sink),

and then peak RSS of the sender for --n and --big subscribers against
smtp-sink (memory must not grow with the list). Each sender run is a fresh
subprocess so ``ru_maxrss`` is its own. Postfix is installed with apt if
``smtp-sink`` is missing. Numbers vary with the machine's load: compare the
ratios within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from common import free_port  # noqa: E402
sys.path.insert(0, str(ROOT))

SINK_SCRIPT = r"""
import asyncio, signal, sys
from aiosmtpd.controller import Controller
class Count:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        Count.n += len(envelope.rcpt_tos)
        return "250 OK"
c = Controller(Count(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
signal.sigwait({signal.SIGTERM, signal.SIGINT})
c.stop()
print(Count.n, flush=True)
"""


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
def aiosmtpd_sink() -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SINK_SCRIPT, str(port)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()
    try:
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


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


def smtp_source(tools: str, port: int, n: int, size: int, sessions: int) -> float:
    cmd = [
        f"{tools}/smtp-source", "-s", str(sessions), "-m", str(n), "-l", str(size),
        "-f", "briefs@news.example.org", "-t", "reader@example.net", f"127.0.0.1:{port}",
    ]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return n / (time.perf_counter() - start)


# ------------------------------------------------------------ the sender side


def prepare(workdir: Path, n: int) -> tuple[Path, int, bytes]:
    """A store with ``n`` instant subscribers and one approved story issue (the reference brief).

    Also returns one recipient's message, for the plain-smtplib reference row.
    """
    from publisher.core.clock import system_clock
    from publisher.delivery import send as delivery
    from publisher.store import connect
    from publisher.store import issues as issues_store
    from tests.support.smtp import add_story_issue, add_subscribers, make_cfg

    cfg = make_cfg(workdir)
    engine = connect(cfg.store_url)
    add_subscribers(engine, n)
    issue_id = add_story_issue(engine, cfg)
    template = delivery.build_template(issues_store.get_issue(engine, issue_id), cfg, sent_at=system_clock())
    sample = template.personalize(
        to="reader@example.net", unsubscribe_url=cfg.site.url("unsubscribe?t=" + "x" * 90), message_id="<1.1.x@example.org>"
    )
    engine.dispose()
    return workdir, issue_id, sample


def plain_smtplib(port: int, n: int, message: bytes, threads: int = 10) -> float:
    """The naive reference: smtplib.sendmail of one pre-serialised message from N threads."""
    import itertools
    import smtplib
    import threading

    counter = itertools.count()

    def run() -> None:
        with smtplib.SMTP("127.0.0.1", port) as conn:
            while next(counter) < n:
                conn.sendmail("briefs@news.example.org", ["reader@example.net"], message)

    start = time.perf_counter()
    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return n / (time.perf_counter() - start)


def write_key(workdir: Path, kind: str) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa" else ed25519.Ed25519PrivateKey.generate()
    path = workdir / f"dkim-{kind}.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return path


def run_sender(workdir: Path, issue_id: int, port: int, connections: int, dkim: str = "none") -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", str(workdir), str(issue_id), str(port), str(connections), dkim],
        check=True, capture_output=True, text=True, env={**os.environ, "PUBLISHER_SIGNING_KEY": "b" * 40},
    )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def worker(workdir: Path, issue_id: int, port: int, connections: int, dkim: str) -> None:
    import dataclasses

    import sqlalchemy as sa

    from publisher.core.clock import system_clock
    from publisher.delivery import send as delivery
    from publisher.store import connect
    from publisher.store import issues as issues_store
    from publisher.store.schema import deliveries, issues
    from tests.support.smtp import make_cfg

    cfg = make_cfg(workdir, port=port, connections=connections, batch_size=200)
    if dkim != "none":
        key = write_key(workdir, dkim)
        cfg = dataclasses.replace(cfg, dkim=dataclasses.replace(cfg.dkim, domain="news.example.org", selector="b", private_key=str(key)))
    engine = connect(cfg.store_url)
    with engine.begin() as conn:  # every run starts from a fresh, approved issue
        conn.execute(deliveries.delete())
        conn.execute(issues.update().values(state="approved"))
    start = time.perf_counter()
    report = delivery.send_issue(cfg, engine, issue_id)
    elapsed = time.perf_counter() - start
    size = len(delivery.build_template(issues_store.get_issue(engine, issue_id), cfg, sent_at=system_clock())
               .personalize(to="x@example.net", unsubscribe_url="https://e.org/u?t=x", message_id="<a@b>"))
    with engine.connect() as conn:
        sent = conn.execute(sa.select(sa.func.count()).where(deliveries.c.state == "sent")).scalar_one()
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"sent": sent, "reported": report.sent, "seconds": elapsed, "rate": sent / elapsed,
                      "peak_mb": rss_kb / 1024, "size": size}))


@dataclasses.dataclass
class Row:
    sink: str
    what: str
    rate: float
    peak_mb: float | None = None
    note: str = ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="subscribers for the throughput runs")
    ap.add_argument("--big", type=int, default=100_000, help="subscribers for the memory comparison (0: skip)")
    ap.add_argument("--connections", type=int, default=8, help="N for the parallel runs")
    ap.add_argument("--skip-unsigned", action="store_true", help="only the DKIM rows, against smtp-sink")
    ap.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        w = args.worker
        worker(Path(w[0]), int(w[1]), int(w[2]), int(w[3]), w[4])
        return

    tools = ensure_postfix_tools()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-send-") as tmp:
        small, issue_small, sample = prepare(Path(tmp) / "small", args.n)
        probe = None
        with postfix_sink(tools) as port:
            ceiling = smtp_source(tools, port, args.n, len(sample), 10)
            rows.append(Row("smtp-sink", f"smtp-source -s10 ({len(sample) // 1024} KB)", ceiling))
            for dkim in ("none", "rsa", "ed25519"):
                got = run_sender(small, issue_small, port, args.connections, dkim)
                label = "unsigned" if dkim == "none" else f"DKIM {dkim}-sha256"
                rows.append(Row("smtp-sink", f"publisher, {args.connections} conn., {label}", got["rate"], got["peak_mb"],
                                f"{got['rate'] / ceiling:.0%} of ceiling"))
        for sink_name in () if args.skip_unsigned else ("aiosmtpd", "smtp-sink"):
            cm = aiosmtpd_sink() if sink_name == "aiosmtpd" else postfix_sink(tools)
            with cm as port:
                one = run_sender(small, issue_small, port, 1)
                probe = probe or one
                size = int(one["size"])
                ceiling = smtp_source(tools, port, args.n, size, 10)
                naive = plain_smtplib(port, args.n, sample)
                many = run_sender(small, issue_small, port, args.connections)
                rows.append(Row(sink_name, f"smtp-source -s10 ({size // 1024} KB)", ceiling))
                rows.append(Row(sink_name, "plain smtplib, 10 threads, 1 message", naive, None,
                                f"{naive / ceiling:.0%} of ceiling"))
                rows.append(Row(sink_name, "publisher, 1 connection", one["rate"], one["peak_mb"],
                                f"{one['rate'] / ceiling:.0%} of ceiling"))
                rows.append(Row(sink_name, f"publisher, {args.connections} connections", many["rate"], many["peak_mb"],
                                f"{many['rate'] / ceiling:.0%} of ceiling"))
        if args.big and not args.skip_unsigned:
            big, issue_big, _ = prepare(Path(tmp) / "big", args.big)
            with postfix_sink(tools) as port:
                small_run = run_sender(small, issue_small, port, args.connections)
                big_run = run_sender(big, issue_big, port, args.connections)
            growth = big_run["peak_mb"] / small_run["peak_mb"] - 1
            rows.append(Row("smtp-sink", f"memory, {args.n:,} subscribers", small_run["rate"], small_run["peak_mb"]))
            rows.append(Row("smtp-sink", f"memory, {args.big:,} subscribers", big_run["rate"], big_run["peak_mb"],
                            f"peak RSS {growth:+.0%} vs {args.n:,}"))

    print(f"\n{args.n:,} subscribers, message {probe['size'] if probe else 0:,} bytes, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}\n")
    print(f"| {'sink':<10} | {'sender':<38} | {'msg/s':>8} | {'peak MB':>8} | note")
    print(f"|{'-' * 12}|{'-' * 40}|{'-' * 10}|{'-' * 10}|------")
    for r in rows:
        mem = f"{r.peak_mb:8.1f}" if r.peak_mb is not None else " " * 8
        print(f"| {r.sink:<10} | {r.what:<38} | {r.rate:8.0f} | {mem} | {r.note}")


if __name__ == "__main__":
    main()
