"""Two ``publisher run`` on one PostgreSQL store: one leads, the other stands by and takes over."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from publisher import store
from publisher.store.schema import issue_events, stories
from tests.support.postgres import PgServer
from tests.support.project import brief_text, make_project

pytestmark = pytest.mark.slow


def _run(cfg_path: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PUBLISHER_SIGNING_KEY": "k" * 40}
    return subprocess.Popen(
        [sys.executable, "-c", "from publisher.cli import main; main()", "run", "--no-web", "--no-send", "--config", str(cfg_path)],
        env=env, stdout=subprocess.DEVNULL, stderr=open(log, "wb"),  # noqa: SIM115
    )


def _wait_text(log: Path, text: str, timeout: float) -> float:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if text in log.read_text(errors="replace"):
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in {log.name} after {timeout}s:\n{log.read_text(errors='replace')}")


@pytest.fixture
def pg_url(pg_server: PgServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = pg_server.create_database("leader")
    monkeypatch.setenv("PUBLISHER_STORE_URL", url)
    yield url
    pg_server.drop_database(url)


def test_one_run_leads_and_the_standby_takes_over_within_ten_seconds(tmp_path: Path, pg_url: str) -> None:
    cfg = make_project(tmp_path)
    cfg_path = Path(cfg.source)
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = _run(cfg_path, first_log)
    second = None
    try:
        _wait_text(first_log, "service started", 60)
        second = _run(cfg_path, second_log)
        _wait_text(second_log, f"standing by (leader: {socket.gethostname()}/{first.pid})", 30)
        engine = store.connect(pg_url)
        with engine.connect() as conn:
            published = int(conn.execute(sa.select(sa.func.count()).select_from(stories)).scalar_one())
            created = conn.execute(sa.select(issue_events.c.issue_id, sa.func.count()).where(
                issue_events.c.from_state.is_(None)).group_by(issue_events.c.issue_id)).all()
        assert published > 0
        assert all(n == 1 for _issue, n in created)  # every issue made once
        time.sleep(1.0)
        assert "service started" not in second_log.read_text()  # the standby did no scheduler work
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed = time.monotonic()
        (tmp_path / "briefs" / "late-news.md").write_text(brief_text("late-news", "Late news"), encoding="utf-8")

        def count() -> int:
            with engine.connect() as conn:
                return int(conn.execute(sa.select(sa.func.count()).select_from(stories)).scalar_one())

        while count() == published:
            assert time.monotonic() - killed < 10, second_log.read_text()
            time.sleep(0.05)
        took = time.monotonic() - killed
        print(f"\nstandby published a new brief {took:.1f}s after the leader was killed")
        assert "leader lock taken" in second_log.read_text()
        engine.dispose()
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=20)
