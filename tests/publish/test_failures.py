"""A full disk, a slow brief: publishing waits for nothing it does not need and recovers by itself."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from publisher import store
from publisher.core.config import Config
from publisher.publish import outputs, pipeline
from publisher.publish.pipeline import Pipeline
from publisher.publish.retry import Retries
from publisher.store import schema
from tests.support.folders import issue_state, settle
from tests.support.project import brief_text, build_config
from tests.support.waiting import wait_for


def _put(cfg: Config, name: str, slug: str) -> None:
    path = cfg.paths.briefs / name
    path.write_text(brief_text(slug, slug.title()))
    settle(path)


def _story_slugs(pub: Pipeline) -> set[str]:
    with pub.engine.connect() as conn:
        return set(conn.execute(sa.select(schema.stories.c.slug)).scalars())


@pytest.fixture
def pub(tmp_path: Path) -> Iterator[Pipeline]:
    cfg = build_config(tmp_path, create=True)
    p = Pipeline(cfg, store.connect(cfg.store_url))
    p.retries = Retries(0.01)  # a short backoff keeps the test quick; its doubling is tested in test_backoff
    yield p


@pytest.mark.parametrize("stage", ["read", "render"])
def test_the_desk_does_not_wait_for_a_slow_brief(pub: Pipeline, stage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _put(pub.cfg, "a.md", "story-a")
    pub.sync()
    assert issue_state(pub.engine, "story-a") == "awaiting_approval"
    entered, release = threading.Event(), threading.Event()
    real = pipeline.read_and_parse if stage == "read" else pipeline.render_story

    def slow(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        if "slow" in str(args[1]) or getattr(args[0], "slug", "") == "story-slow":
            entered.set()
            release.wait(60)
        return out

    monkeypatch.setattr(pipeline, "read_and_parse" if stage == "read" else "render_story", slow)
    _put(pub.cfg, "slow.md", "story-slow")
    scan = threading.Thread(target=pub.sync)
    scan.start()
    try:
        assert entered.wait(30)
        desk = threading.Thread(target=pub.approve, args=("story-a",))
        desk.start()
        desk.join(30)  # a deadline for a deadlock, not a speed bound
        assert not desk.is_alive(), "approve waited for another brief's " + stage
        assert issue_state(pub.engine, "story-a") == "approved"
        assert scan.is_alive()  # the slow brief was still being processed
    finally:
        release.set()
        scan.join(60)
    assert issue_state(pub.engine, "story-slow") == "awaiting_approval"


_real_stage = outputs._stage


def _enospc(match: str) -> Any:
    real = outputs._stage

    def stage(path: Path, data: bytes) -> str:
        if match in path.name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data)

    return stage


def test_a_full_disk_leaves_files_and_store_consistent_then_recovers(
    pub: Pipeline, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = pub.cfg
    _put(cfg, "one.md", "story-1")
    pub.sync()
    feed_before = (cfg.paths.public / "feed.atom").read_bytes()
    monkeypatch.setattr(outputs, "_stage", _enospc(""))  # every write fails
    _put(cfg, "two.md", "story-2")
    caplog.set_level(logging.INFO)
    result = pub.sync()
    assert result.published == []
    assert len(result.errors) == 1 and "two.md: cannot publish: No space left on device [ENOSPC]" in result.errors[0]
    # Nothing half done: no row, no page, the old feed; the failure shows in status.
    assert _story_slugs(pub) == {"story-1"}
    assert not (cfg.paths.public / "issues" / "story-2.html").exists()
    assert not list((cfg.paths.public / "issues").glob(".*.tmp"))
    assert (cfg.paths.public / "feed.atom").read_bytes() == feed_before
    assert "ENOSPC" in dict(pub.status().errors)["two.md"]
    # Retried on later scans (after the backoff), logged once while the error stays the same.
    wait_for(lambda: pub.retries.due("two.md", result_stat(pub, "two.md")), what="the backoff")
    assert pub.sync().errors
    assert sum("No space left" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR) == 1
    # Space returns: the same pipeline publishes, no restart.
    monkeypatch.setattr(outputs, "_stage", _real_stage)
    wait_for(lambda: "story-2" in pub.sync().published, what="publishing after space returned")
    assert _story_slugs(pub) == {"story-1", "story-2"}
    assert (cfg.paths.public / "issues" / "story-2.html").exists()
    assert b"story-2" in (cfg.paths.public / "feed.atom").read_bytes()
    assert "two.md" not in dict(pub.status().errors)


def result_stat(pub: Pipeline, path: str) -> Any:
    from publisher.publish import watch

    return watch.scan_one(pub.cfg.paths.briefs / path)


def test_a_feed_that_cannot_be_written_is_written_on_the_next_scan(pub: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = pub.cfg
    _put(cfg, "one.md", "story-1")
    pub.sync()
    monkeypatch.setattr(outputs, "_stage", _enospc("feed."))
    _put(cfg, "two.md", "story-2")
    result = pub.sync()
    # The story is committed with its page; only the feeds wait.
    assert result.published == ["story-2"] and (cfg.paths.public / "issues" / "story-2.html").exists()
    assert b"story-2" not in (cfg.paths.public / "feed.atom").read_bytes()
    monkeypatch.setattr(outputs, "_stage", _real_stage)
    wait_for(lambda: b"story-2" in (pub.sync(), (cfg.paths.public / "feed.atom").read_bytes())[1], what="the feed rewritten")


def test_backoff_doubles_and_an_edit_retries_at_once() -> None:
    now = [100.0]
    retries = Retries(2.0, cap=10.0, clock=lambda: now[0])
    from publisher.publish.watch import Stat

    st = Stat(1, 1)
    assert retries.failed("a.md", st, "boom") is True
    assert not retries.due("a.md", st)
    now[0] += 2.0
    assert retries.due("a.md", st)
    assert retries.failed("a.md", st, "boom") is False  # same error: not logged again
    now[0] += 3.9
    assert not retries.due("a.md", st)  # 4 s after the second failure
    assert retries.due("a.md", Stat(2, 1))  # edited: at once
    for _ in range(10):
        retries.failed("a.md", st, "boom")
    assert retries.seconds_to_next() == 10.0  # capped
    assert retries.succeeded("a.md") and retries.pending() == ()


def _mount_tmpfs(where: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    return done.returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize("full", ["public", "state"])
def test_a_real_full_tmpfs_then_recovery(tmp_path: Path, full: str) -> None:
    cfg = build_config(tmp_path, create=True)
    folder = getattr(cfg.paths, full)
    if not _mount_tmpfs(folder, "2m"):
        pytest.skip("needs root and tmpfs mounts")
    try:
        pub = Pipeline(cfg, store.connect(cfg.store_url))
        pub.retries = Retries(0.01)
        _put(cfg, "one.md", "story-1")
        assert pub.sync().published == ["story-1"]
        filler = folder / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)
        _put(cfg, "two.md", "story-2")
        result = pub.sync()
        assert result.published == [] and ("ENOSPC" in result.errors[0] or "disk is full" in result.errors[0]), result.errors
        filler.unlink()
        assert _story_slugs(pub) == {"story-1"}
        wait_for(lambda: "story-2" in pub.sync().published, what="publishing after space returned")
        assert b"story-2" in (cfg.paths.public / "feed.atom").read_bytes()
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_bug_in_one_brief_is_that_brief_s_failure(pub: Pipeline, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    real = pipeline.render_story

    def buggy(brief: Any, cfg: Config, **kwargs: Any) -> Any:
        if brief.slug == "story-bad":
            raise ValueError("a renderer bug")
        return real(brief, cfg, **kwargs)

    monkeypatch.setattr(pipeline, "render_story", buggy)
    for name in ("a.md", "b.md", "c.md"):
        _put(pub.cfg, name, {"a.md": "story-a", "b.md": "story-bad", "c.md": "story-c"}[name])
    result = pub.sync()
    assert sorted(result.published) == ["story-a", "story-c"]
    assert result.errors == [f"{pub.cfg.paths.briefs / 'b.md'}: cannot publish: ValueError: a renderer bug"]
    assert any(r.exc_info for r in caplog.records if "a renderer bug" in r.getMessage())  # the traceback is kept


def test_a_failed_file_deleted_is_forgotten(pub: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outputs, "_stage", _enospc("story-2"))
    _put(pub.cfg, "one.md", "story-1")
    _put(pub.cfg, "two.md", "story-2")
    assert pub.sync().published == ["story-1"]
    assert "two.md" in dict(pub.status().errors) and pub.retries.pending() == ("two.md",)
    (pub.cfg.paths.briefs / "two.md").unlink()
    result = pub.sync()
    assert not result.errors and result.retry_after is None
    assert pub.status().errors == [] and pub.retries.pending() == ()


def test_feed_digests_are_committed_after_the_renders(pub: Pipeline) -> None:
    from publisher.store import get_kv

    _put(pub.cfg, "one.md", "story-1")
    pub.sync()
    # Kept in the store, so a fresh process skips feeds whose members did not change.
    with pub.engine.connect() as conn:
        assert get_kv(conn, "feed.members:")


def test_a_subfolder_that_cannot_be_listed_retires_nothing(pub: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    (pub.cfg.paths.briefs / "desk-b").mkdir()
    _put(pub.cfg, "a.md", "story-a")
    _put(pub.cfg, "desk-b/b.md", "story-b")
    assert sorted(pub.sync().published) == ["story-a", "story-b"]
    real = os.scandir

    def scandir(path: Any) -> Any:
        if str(path).endswith("desk-b"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path)

    # Injected: as root (CI), chmod 000 would not stop the listing.
    monkeypatch.setattr(os, "scandir", scandir)
    _put(pub.cfg, "c.md", "story-c")
    result = pub.sync()
    assert result.published == ["story-c"] and result.removed == []
    assert b"story-b" in (pub.cfg.paths.public / "feed.atom").read_bytes()
    monkeypatch.setattr(os, "scandir", real)
    (pub.cfg.paths.briefs / "desk-b" / "b.md").unlink()
    assert pub.sync().removed == ["story-b"]  # readable again: a real deletion is seen
