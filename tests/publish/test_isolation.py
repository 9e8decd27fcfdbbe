"""One bad file stops nothing else: build, run --once and the service, across a restart."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import feedparser
import pytest
from click.testing import CliRunner

from publisher import store
from publisher.cli import main
from publisher.core.config import Config
from publisher.publish.pipeline import Pipeline
from publisher.service import Service
from tests.support.folders import issue_state, settle
from tests.support.project import brief_text, make_project
from tests.support.waiting import wait_for

# ~150 KB of summary: no cut of the takes can bring its email under the 90 KB budget.
OVERSIZED = brief_text("oversized", "Oversized", summary="word " * 30_000)


def _three_briefs(briefs: Path) -> None:
    briefs.mkdir(exist_ok=True)
    for name, text in (("a-good.md", brief_text("good-a", "Good A")), ("b-big.md", OVERSIZED),
                       ("c-good.md", brief_text("good-c", "Good C"))):
        (briefs / name).write_text(text)
        settle(briefs / name)


def _feed_ids(public: Path) -> set[str]:
    path = public / "feed.atom"
    return {e.id for e in feedparser.parse(path.read_bytes()).entries} if path.exists() else set()


def _published(cfg: Config) -> bool:
    ids = " ".join(_feed_ids(cfg.paths.public))
    return "good-a" in ids and "good-c" in ids


def _assert_isolated(cfg: Config, output: str) -> None:
    assert _published(cfg), output
    assert "oversized" not in " ".join(_feed_ids(cfg.paths.public))
    for slug in ("good-a", "good-c"):
        assert (cfg.paths.public / "issues" / f"{slug}.html").exists()
    assert not (cfg.paths.public / "issues" / "oversized.html").exists()
    status = CliRunner().invoke(main, ["status", "--config", cfg.source])
    assert status.exit_code == 0, status.output
    assert f"{cfg.paths.briefs / 'b-big.md'}: cannot publish: story oversized: HTML is" in status.output
    assert "2 stories" in status.output


def test_build_publishes_the_good_briefs_beside_an_oversized_one(tmp_path: Path) -> None:
    cfg = make_project(tmp_path, samples=False)
    _three_briefs(cfg.paths.briefs)
    # Two workers: the render error must cross the process boundary as a result, not a crash.
    result = CliRunner().invoke(main, ["build", "--config", cfg.source])
    assert result.exit_code == 1, result.output
    assert "BrokenProcessPool" not in result.output
    assert "2 published, 1 rejected" in result.stderr
    _assert_isolated(cfg, result.output)


def test_pool_build_isolates_a_render_failure(tmp_path: Path) -> None:
    cfg = make_project(tmp_path, samples=False)
    _three_briefs(cfg.paths.briefs)
    result = Pipeline(cfg, store.connect(cfg.store_url)).build_all(workers=2)
    assert sorted(result.published) == ["good-a", "good-c"]
    assert len(result.errors) == 1 and "b-big.md: cannot publish" in result.errors[0]


def test_run_once_publishes_the_good_briefs_beside_an_oversized_one(tmp_path: Path) -> None:
    cfg = make_project(tmp_path, samples=False)
    _three_briefs(cfg.paths.briefs)
    result = CliRunner().invoke(main, ["run", "--once", "--config", cfg.source])
    assert result.exit_code == 0, result.output
    _assert_isolated(cfg, result.output)
    # A second pass on the now-known store: the bad file is backed off or rejected again, never fatal.
    again = CliRunner().invoke(main, ["run", "--once", "--config", cfg.source])
    assert again.exit_code == 0, again.output
    _assert_isolated(cfg, again.output)


@pytest.mark.slow
def test_service_isolates_an_oversized_brief_and_retries_it_once_fixed(tmp_path: Path) -> None:
    cfg = make_project(tmp_path, samples=False)
    engine = store.connect(cfg.store_url)
    # A store that already knows a file: the three arrive in one scan batch of the running service.
    (cfg.paths.briefs / "0-first.md").write_text(brief_text("first", "First"))
    settle(cfg.paths.briefs / "0-first.md")
    Pipeline(cfg, engine).build_all(workers=1)
    svc = Service(cfg, engine, Pipeline(cfg, engine), deliver=False)
    svc.start()
    try:
        _three_briefs(cfg.paths.briefs)
        wait_for(lambda: _published(cfg), what="the good briefs in the feed")
        wait_for(lambda: issue_state(engine, "good-a") == "awaiting_approval", what="good-a's issue")
        wait_for(lambda: issue_state(engine, "good-c") == "awaiting_approval", what="good-c's issue")
        wait_for(lambda: any("b-big.md" in e for _, e in svc.pipeline.status().errors), what="the rejection in status")
        assert issue_state(engine, "oversized") is None
        assert "b-big.md" in svc.pipeline.retries.pending()
    finally:
        svc.stop()
    # Restarted on the same state: up, the bad file still rejected, then fixed and published without a restart.
    svc = Service(cfg, engine, Pipeline(cfg, engine), deliver=False)
    svc.start()
    try:
        wait_for(lambda: "b-big.md" in svc.pipeline.retries.pending(), what="the bad file retried after the restart")
        assert svc.scheduler.running
        (cfg.paths.briefs / "b-big.md").write_text(brief_text("oversized", "Oversized, cut"))
        wait_for(lambda: "oversized" in " ".join(_feed_ids(cfg.paths.public)), what="the fixed brief published")
        wait_for(lambda: not svc.pipeline.status().errors, what="the error cleared")
    finally:
        svc.stop()


@pytest.mark.slow
def test_publisher_run_stays_up_across_a_restart_with_a_bad_file(tmp_path: Path) -> None:
    cfg = make_project(tmp_path, samples=False)
    _three_briefs(cfg.paths.briefs)
    cmd = [sys.executable, "-c", "from publisher.cli import main; main()", "run", "--no-web", "--no-send", "--config", cfg.source]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for attempt in range(2):
        log = tmp_path / f"run-{attempt}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
            try:
                wait_for(lambda: b"service started" in log.read_bytes() or proc.poll() is not None, timeout=60, what="the service")
                assert proc.poll() is None, log.read_text()
                assert _published(cfg)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        assert "b-big.md: cannot publish" in log.read_text() or attempt == 1
