"""Publisher end to end on a temp folder: build, sync, approval, edits, errors, digests."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from publisher import store
from publisher.core.clock import FixedClock
from publisher.core.config import Config
from publisher.publish.pipeline import Pipeline
from publisher.store import schema

from tests.support.folders import brief, issue_state, make_cfg, put, settle, snapshot

@pytest.fixture
def setup(tmp_path: Path) -> tuple[Config, sa.Engine, Publisher]:
    cfg = make_cfg(tmp_path)
    engine = store.connect(cfg.store_url)
    return cfg, engine, Pipeline(cfg, engine)


def test_build_twice_is_byte_identical_and_keeps_mtimes(setup: tuple[Config, sa.Engine, Publisher], tmp_path: Path) -> None:
    cfg, engine, pub = setup
    for n in range(3):
        put(cfg.paths.briefs, f"story-{n}.txt", brief(n))
    first = pub.build_all(workers=2)
    assert sorted(first.published) == ["story-0", "story-1", "story-2"] and not first.errors
    before = snapshot(cfg.paths.public)
    assert "issues/story-1.html" in before
    again = Pipeline(cfg, engine).build_all(workers=1)
    assert not again.written
    assert snapshot(cfg.paths.public) == before
    # A fresh store (state lost) must produce the very same bytes too.
    fresh = dataclasses.replace(cfg, paths=dataclasses.replace(cfg.paths, state=tmp_path / "state2"))
    Pipeline(fresh, store.connect(fresh.store_url)).build_all(workers=2)
    assert snapshot(cfg.paths.public) == before


def test_edit_rewrites_only_that_story(setup: tuple[Config, sa.Engine, Publisher]) -> None:
    cfg, engine, pub = setup
    for n in range(3):
        put(cfg.paths.briefs, f"story-{n}.txt", brief(n))
    pub.build_all(workers=1)
    before = snapshot(cfg.paths.public)
    put(cfg.paths.briefs, "story-1.txt", brief(1, " (corrected)"))
    result = pub.sync()
    assert result.published == ["story-1"]
    after = snapshot(cfg.paths.public)
    changed = {k for k in after if after[k] != before.get(k)}
    assert {"issues/story-1.html", "issues/story-1.txt"} <= changed
    assert not any("story-0" in k or "story-2" in k for k in changed)
    s = schema.stories
    with engine.connect() as conn:
        rows = dict(conn.execute(sa.select(s.c.slug, s.c.updated_at)).all())
        pub_at = dict(conn.execute(sa.select(s.c.slug, s.c.published_at)).all())
    assert rows["story-1"] > pub_at["story-1"]
    assert rows["story-0"] == pub_at["story-0"]


def test_new_brief_awaits_approval_then_approve_and_hold(setup: tuple[Config, sa.Engine, Publisher]) -> None:
    cfg, engine, pub = setup
    put(cfg.paths.briefs, "story-7.txt", brief(7))
    assert pub.sync().published == ["story-7"]
    assert issue_state(engine, "story-7") == "awaiting_approval"
    assert (cfg.paths.public / "issues" / "story-7.html").exists()
    pub.approve("story-7")
    assert issue_state(engine, "story-7") == "approved"
    pub.hold("story-7")
    assert issue_state(engine, "story-7") == "held"
    assert pub.preview_story("story-7").key == "story-7"


def test_without_approval_issue_is_queued_at_once(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, require_approval=False)
    engine = store.connect(cfg.store_url)
    put(cfg.paths.briefs, "story-1.txt", brief(1))
    Pipeline(cfg, engine).sync()
    assert issue_state(engine, "story-1") == "approved"


def test_half_written_brief_waits_for_quiet_period(setup: tuple[Config, sa.Engine, Publisher]) -> None:
    cfg, engine, pub = setup
    cfg.paths.briefs.mkdir(parents=True)
    p = cfg.paths.briefs / "story-3.txt"
    data = brief(3)
    p.write_bytes(data[: len(data) // 2])  # fresh mtime: still being written
    result = pub.sync()
    assert result.waiting == ["story-3.txt"] and not result.published and not result.errors
    p.write_bytes(data)
    settle(p)
    assert pub.sync().published == ["story-3"]
    assert pub.sync().published == []  # once


def test_broken_brief_is_recorded_and_last_good_stays(setup: tuple[Config, sa.Engine, Publisher]) -> None:
    cfg, engine, pub = setup
    put(cfg.paths.briefs, "story-1.txt", brief(1))
    put(cfg.paths.briefs, "story-2.txt", brief(2))
    pub.sync()
    put(cfg.paths.briefs, "story-2.txt", b"not a brief at all\n")
    put(cfg.paths.briefs, "story-4.txt", brief(4))
    result = pub.sync()
    assert result.published == ["story-4"]
    assert len(result.errors) == 1 and "story-2.txt" in result.errors[0]
    assert (cfg.paths.public / "issues" / "story-2.html").exists()
    st = pub.status()
    assert any("story-2.txt" in e for _, e in st.errors)


def test_delete_and_rename(setup: tuple[Config, sa.Engine, Publisher]) -> None:
    cfg, engine, pub = setup
    put(cfg.paths.briefs, "story-1.txt", brief(1))
    put(cfg.paths.briefs, "story-2.txt", brief(2))
    pub.sync()
    (cfg.paths.briefs / "story-1.txt").unlink()
    assert pub.sync().removed == ["story-1"]
    assert not (cfg.paths.public / "issues" / "story-1.html").exists()
    (cfg.paths.briefs / "story-2.txt").rename(cfg.paths.briefs / "renamed.txt")
    settle(cfg.paths.briefs / "renamed.txt")
    result = pub.sync()
    # Same slug at a new path: the same story, not a removal.
    assert not result.removed and not result.errors
    assert (cfg.paths.public / "issues" / "story-2.html").exists()


def test_restart_repeats_nothing(setup: tuple[Config, sa.Engine, Publisher]) -> None:
    cfg, engine, pub = setup
    put(cfg.paths.briefs, "story-1.txt", brief(1))
    pub.sync()
    pub.approve("story-1")
    before = snapshot(cfg.paths.public)
    restarted = Pipeline(cfg, store.connect(cfg.store_url))
    result = restarted.sync()
    assert not result.published and not result.written
    assert snapshot(cfg.paths.public) == before
    assert issue_state(engine, "story-1") == "approved"


def test_drafts_are_stored_never_published(setup: tuple[Config, sa.Engine, Publisher]) -> None:
    cfg, engine, pub = setup
    put(cfg.paths.briefs, "story-9.txt", brief(9, fm="status: draft\n"))
    pub.sync()
    assert not (cfg.paths.public / "issues" / "story-9.html").exists()
    assert issue_state(engine, "story-9") in (None, "draft")


@pytest.mark.parametrize("late_minutes, made", [(30, True), (120, False)])
def test_late_digest_rule(tmp_path: Path, late_minutes: int, made: bool) -> None:
    cfg = make_cfg(tmp_path, digest_cron="0 7 * * *", digest_max_lateness=3600.0)
    engine = store.connect(cfg.store_url)
    clock = FixedClock(dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.timezone.utc))
    pub = Pipeline(cfg, engine, clock=clock)
    assert pub.catch_up_digest() == []  # first start: records the cut-off
    clock.advance(3 * 3600)
    put(cfg.paths.briefs, "story-1.txt", brief(1))
    pub.sync()
    # The service was down over the 07:00 run and restarts later.
    clock.advance(dt.timedelta(hours=16, minutes=late_minutes).total_seconds())
    restarted = Pipeline(cfg, engine, clock=clock)
    got = restarted.catch_up_digest()
    assert bool(got) is made
    assert restarted.catch_up_digest() == []  # once per period
