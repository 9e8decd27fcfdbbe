"""Three ``publisher worker`` processes, one PostgreSQL store, 20,000 readers, an SMTP sink process.

Every address gets the issue once; with one worker killed -9 mid-run every
address still gets it, and the duplicates are bounded by the rows that
worker had claimed when it died (printed: run with -s to see them).
"""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from publisher.store import deliveries as ledger
from publisher.store.schema import deliveries
from tests.support.ports import free_port
from tests.support.smtp import add_issue, add_subscribers, issue_state, make_store
from tests.support.project import build_config

N = 20_000
pytestmark = pytest.mark.slow


def _config(tmp: Path, port: int) -> Path:
    path = tmp / "config.toml"
    path.write_text(
        f"""
[site]
base_url = "https://news.example.org/"
[email]
sender_address = "briefs@news.example.org"
[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
connections = 4
batch_size = 100
[delivery]
lease = 3.0
""",
        encoding="utf-8",
    )
    return path


def _sink(port: int, out: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.sink_process", str(port), str(out)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _workers(cfg_path: Path, n: int, logs: Path) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "PUBLISHER_SIGNING_KEY": "k" * 40}
    return [
        subprocess.Popen(
            [sys.executable, "-c", "from publisher.cli import main; main()", "worker", "--until-idle", "--config", str(cfg_path)],
            env=env, stdout=subprocess.DEVNULL, stderr=open(logs / f"worker{i}.log", "wb"),  # noqa: SIM115
        )
        for i in range(n)
    ]


def _setup(tmp_path: Path, store_url: str) -> tuple[sa.Engine, int, list[str], Path, subprocess.Popen[str], Path]:
    if not store_url.startswith("postgresql"):
        pytest.skip("several worker processes share a PostgreSQL store")
    engine = make_store(build_config(tmp_path))
    issue_id = add_issue(engine)
    emails = add_subscribers(engine, N)
    port = free_port()
    received = tmp_path / "received.txt"
    sink = _sink(port, received)
    return engine, issue_id, emails, _config(tmp_path, port), sink, received


def _finish(workers: list[subprocess.Popen[bytes]], sink: subprocess.Popen[str], received: Path) -> collections.Counter[str]:
    for w in workers:
        w.wait(timeout=400)
    time.sleep(0.5)
    sink.send_signal(signal.SIGTERM)
    sink.wait(timeout=10)
    return collections.Counter(received.read_text().split())


def test_three_workers_send_to_every_address_once(tmp_path: Path, store_url: str) -> None:
    engine, issue_id, emails, cfg_path, sink, received = _setup(tmp_path, store_url)
    workers = _workers(cfg_path, 3, tmp_path)
    got = _finish(workers, sink, received)
    assert [w.returncode for w in workers] == [0, 0, 0], [(tmp_path / f"worker{i}.log").read_text() for i in range(3)]
    assert set(got) == set(emails)
    duplicates = sum(n - 1 for n in got.values())
    print(f"\n3 workers, {N} readers: {sum(got.values())} messages, duplicates {duplicates}")
    assert duplicates == 0
    assert issue_state(engine, issue_id) == "sent" and ledger.progress(engine, issue_id).sent == N


def test_a_worker_killed_mid_run_costs_at_most_its_claimed_batch(tmp_path: Path, store_url: str) -> None:
    engine, issue_id, emails, cfg_path, sink, received = _setup(tmp_path, store_url)
    workers = _workers(cfg_path, 3, tmp_path)
    deadline = time.monotonic() + 120
    while ledger.progress(engine, issue_id).sent < N // 4:
        assert time.monotonic() < deadline, "the workers did not get going"
        time.sleep(0.05)
    victim = workers[0]
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    with engine.connect() as conn:
        held = int(conn.execute(sa.select(sa.func.count()).where(
            deliveries.c.state == "sending", deliveries.c.claimed_by.like(f"{socket.gethostname()}:{victim.pid}:%")
        )).scalar_one())
    got = _finish(workers[1:], sink, received)
    assert set(got) == set(emails)  # every address, the dead worker's claims included
    duplicates = sum(n - 1 for n in got.values())
    print(f"\nkilled worker held {held} claimed rows; duplicates {duplicates} of {N}")
    assert duplicates <= held
    assert issue_state(engine, issue_id) == "sent"
