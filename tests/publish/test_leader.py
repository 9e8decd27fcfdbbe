"""Two ``publisher run`` on one PostgreSQL store: one leads, the other stands by and takes over."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from publisher import store
from publisher.store.schema import issue_events, issues, stories
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


def _digests(engine: sa.Engine) -> dict[str, list[str]]:
    """Each digest issue's key → the actors of its creation events."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(issues.c.key, issue_events.c.actor)
            .join(issue_events, issue_events.c.issue_id == issues.c.id)
            .where(issues.c.kind == "digest", issue_events.c.from_state.is_(None))
        ).all()
    made: dict[str, list[str]] = {}
    for key, actor in rows:
        made.setdefault(key, []).append(actor)
    return made


def _wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, f"{what} not within {timeout}s"
        time.sleep(0.2)


def test_with_two_runs_up_across_digest_cutoffs_only_the_leader_makes_each_digest(tmp_path: Path, pg_url: str) -> None:
    # A digest every minute: both runs stay up across two cut-offs.
    cfg = make_project(tmp_path, samples=False, digests={"daily": "* * * * *", "max_lateness": 3600})
    cfg_path = Path(cfg.source)
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = _run(cfg_path, first_log)
    second = None
    engine = store.connect(pg_url)
    try:
        _wait_text(first_log, "service started", 60)
        second = _run(cfg_path, second_log)
        _wait_text(second_log, f"standing by (leader: {socket.gethostname()}/{first.pid})", 30)
        for n, slug in enumerate(("first-news", "second-news"), start=1):
            (tmp_path / "briefs" / f"{slug}.md").write_text(brief_text(slug, slug.replace("-", " ").title()), encoding="utf-8")
            # The next cut-off after the brief is published makes a digest carrying it.
            _wait_until(lambda: len(_digests(engine)) >= n, 75, f"digest {n}")
        made = _digests(engine)
        assert len(made) == 2, made
        leader_log, standby_log = first_log.read_text(), second_log.read_text()
        for key, actors in made.items():
            # Created once, by the leader's scheduler (the history names the process).
            assert actors == [f"service ({socket.gethostname()}/{first.pid})"], (key, actors)
            assert f"daily digest {key} " in leader_log, leader_log
        assert "digest" not in standby_log and "service started" not in standby_log, standby_log
        assert second.poll() is None and first.poll() is None  # both were up the whole time
    finally:
        engine.dispose()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=20)


def test_two_concurrent_digest_commands_make_one_digest(tmp_path: Path, pg_url: str) -> None:
    cfg = make_project(tmp_path, digests={"daily": "0 7 * * *"})
    env = {**os.environ, "PUBLISHER_SIGNING_KEY": "k" * 40}
    base = [sys.executable, "-c", "from publisher.cli import main; main()"]
    published = subprocess.run([*base, "run", "--once", "--no-web", "--no-send", "--config", str(cfg.source)],
                               env=env, capture_output=True, text=True, timeout=120)
    assert published.returncode == 0, published.stderr
    engine = store.connect(pg_url)
    with engine.begin() as conn:  # the stories came after the last cut-off: the digest carries them
        conn.execute(sa.text("DELETE FROM kv WHERE key LIKE 'digest.cutoff%'"))
    procs = [
        subprocess.Popen([*base, "digest", "--cadence", "daily", "--config", str(cfg.source)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _out, err in outs]
    made = _digests(engine)
    engine.dispose()
    assert len(made) == 1, made
    key, actors = next(iter(made.items()))
    assert len(actors) == 1, actors  # created once, however many processes raced
    assert all(f"daily digest {key}" in out for out, _err in outs), outs  # every process shows the one digest
