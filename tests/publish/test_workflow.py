"""The editorial workflow as editors live it: hold, approve (now or at a time), digests per
cadence over a simulated fortnight, pages behind every digest link, and the history of moves."""

from __future__ import annotations

import datetime as dt
import mailbox
import re
from collections import Counter
from pathlib import Path

import pytest

from publisher import store
from publisher.core.clock import FixedClock
from publisher.core.config import Config
from publisher.core.errors import StateError
from publisher.delivery.send import drain
from publisher.publish.pipeline import Pipeline
from publisher.store import issues, stories
from publisher.store import subscribers as subscribers_store
from tests.support.folders import brief, put
from tests.support.project import build_config

UTC = dt.timezone.utc
START = dt.datetime(2030, 1, 6, 12, 0, tzinfo=UTC)  # a Sunday, noon


def make(tmp_path: Path, **digests: object) -> tuple[Config, Pipeline, FixedClock]:
    cfg = build_config(
        tmp_path,
        site={"base_url": "https://news.example.org/"},
        schedule={"quiet_period": 0.0, "require_approval": True},
        digests={"daily": "0 7 * * *", "weekly": "0 7 * * mon", **digests},
    )
    clock = FixedClock(START)
    pipeline = Pipeline(cfg, store.connect(cfg.store_url), clock=clock)
    pipeline.catch_up_digest()  # first start: cut-offs now
    return cfg, pipeline, clock


def subscribe(pipeline: Pipeline, address: str, cadence: str) -> None:
    subscribers_store.add_subscriber(pipeline.engine, address, cadence, status="active", now=pipeline.clock())


def outbox(cfg: Config) -> list[tuple[str, str]]:
    """(To, X-Publisher-Issue) of every message in the Maildir outbox."""
    box = mailbox.Maildir(str(cfg.paths.state / "outbox"), create=True)
    return sorted((str(m["To"]), str(m["X-Publisher-Issue"])) for m in box)


def publish(cfg: Config, pipeline: Pipeline, clock: FixedClock, n: int) -> str:
    clock.advance(60)
    put(cfg.paths.briefs, f"story-{n}.md", brief(n))
    assert pipeline.sync().published == [f"story-{n}"]
    return f"story-{n}"


def test_a_held_story_never_enters_a_digest(tmp_path: Path) -> None:
    cfg, pipeline, clock = make(tmp_path, weekly="")
    publish(cfg, pipeline, clock, 1)
    held = publish(cfg, pipeline, clock, 2)
    pipeline.hold(held, actor="test")
    clock.at = dt.datetime(2030, 1, 7, 7, 0, 5, tzinfo=UTC)
    issue_id = pipeline.run_digest("daily")
    assert issue_id is not None
    digest = issues.get_issue(pipeline.engine, issue_id)
    assert "Story number 1" in digest.text and "Story number 2" not in digest.text
    assert digest.state == "approved"  # digests need no approval unless configured


def test_digests_can_need_approval_and_be_held(tmp_path: Path) -> None:
    cfg, pipeline, clock = make(tmp_path, weekly="", require_approval=True)
    publish(cfg, pipeline, clock, 1)
    clock.at = dt.datetime(2030, 1, 7, 7, 0, 5, tzinfo=UTC)
    issue_id = pipeline.run_digest("daily")
    assert issue_id is not None and issues.get_issue(pipeline.engine, issue_id).state == "awaiting_approval"
    pipeline.hold("digest:2030-01-07T0700", actor="test")
    subscribe(pipeline, "d@example.org", "daily")
    drain(cfg, pipeline.engine, clock=clock)
    assert outbox(cfg) == []
    released = pipeline.approve("digest:2030-01-07T0700", actor="test")
    assert released.recipients == 1 and "daily digest 2030-01-07T0700" in released.describe()
    drain(cfg, pipeline.engine, clock=clock)
    assert outbox(cfg) == [("d@example.org", "digest/2030-01-07T0700")]


def test_daily_and_weekly_readers_get_their_own_digests_over_a_fortnight(tmp_path: Path) -> None:
    cfg, pipeline, clock = make(tmp_path)
    for address, cadence in (("day@example.org", "daily"), ("week@example.org", "weekly"), ("now@example.org", "instant")):
        subscribe(pipeline, address, cadence)
    made: Counter[str] = Counter()
    for day in range(14):
        morning = dt.datetime(2030, 1, 7, 7, 0, 5, tzinfo=UTC) + dt.timedelta(days=day)
        clock.at = morning
        for cadence, schedule in pipeline.digests.schedules.items():
            if schedule.previous_fire(morning) == morning.replace(second=0):
                if pipeline.run_digest(cadence.value) is not None:
                    made[cadence.value] += 1
        drain(cfg, pipeline.engine, clock=clock)
        clock.at = morning + dt.timedelta(hours=3)
        publish(cfg, pipeline, clock, day)
    clock.at = dt.datetime(2030, 1, 21, 7, 0, 5, tzinfo=UTC)  # the third Monday closes the second week
    assert pipeline.run_digest("daily") is not None and pipeline.run_digest("weekly") is not None
    drain(cfg, pipeline.engine, clock=clock)
    got = outbox(cfg)
    daily = [i for to, i in got if to == "day@example.org"]
    weekly = [i for to, i in got if to == "week@example.org"]
    assert len(daily) == 14 and all(re.fullmatch(r"digest/2030-01-\d\dT0700", i) for i in daily)
    assert weekly == ["digest/2030-W03", "digest/2030-W04"]
    # Instant readers get story issues only once an editor approves them: none here.
    assert [i for to, i in got if to == "now@example.org"] == []
    # Every story went into exactly one weekly digest and one daily digest.
    texts = [issues.find_issue(pipeline.engine, "digest", k).text for k in ("2030-W03", "2030-W04")]
    for n in range(14):
        assert sum(f"Story number {n}:" in t for t in texts) == 1


def test_every_link_of_a_digest_email_resolves_to_a_written_page(tmp_path: Path) -> None:
    cfg, pipeline, clock = make(tmp_path, weekly="")
    for n in (1, 2, 3):
        publish(cfg, pipeline, clock, n)
    clock.at = dt.datetime(2030, 1, 7, 7, 0, 5, tzinfo=UTC)
    digest = issues.get_issue(pipeline.engine, pipeline.run_digest("daily") or 0)
    page = cfg.paths.public / "issues" / "digest-2030-01-07T0700.html"
    assert page.is_file() and "Story number 2" in page.read_text()
    assert "Monday 07 January 2030" in page.read_text() and "nsubscribe" not in page.read_text()  # the site's page, not the email
    ours = sorted(set(re.findall(r'href="(https://news\.example\.org/[^"]*)"', digest.html)))
    assert any("digest-2030-01-07T0700.html" in u for u in ours)
    for url in ours:
        path = url.removeprefix("https://news.example.org/").split("?")[0].split("#")[0]
        if path in ("unsubscribe", "subscribe", "confirm"):
            continue  # served by the app, not files
        if path == "" or path.endswith("/"):
            path += "index.html"  # as the server resolves folders
        assert (cfg.paths.public / path).is_file(), f"{url} has no page"


def test_approval_with_no_readers_waits_for_the_first_one(tmp_path: Path) -> None:
    cfg, pipeline, clock = make(tmp_path, weekly="", daily="")
    slug = publish(cfg, pipeline, clock, 1)
    released = pipeline.approve(slug, actor="cli (editor)")
    assert released.recipients == 0 and "nobody yet" in released.describe()
    drain(cfg, pipeline.engine, clock=clock)
    assert issues.find_issue(pipeline.engine, "story", slug).state == "approved"  # not closed as sent to nobody
    subscribe(pipeline, "first@example.org", "instant")
    drain(cfg, pipeline.engine, clock=clock)
    assert issues.find_issue(pipeline.engine, "story", slug).state == "sent"
    assert outbox(cfg) == [("first@example.org", f"story/{slug}")]


def test_a_scheduled_approval_waits_for_its_time(tmp_path: Path) -> None:
    cfg, pipeline, clock = make(tmp_path, weekly="", daily="")
    slug = publish(cfg, pipeline, clock, 1)
    subscribe(pipeline, "r@example.org", "instant")
    at = clock() + dt.timedelta(hours=2)
    released = pipeline.approve(slug, actor="desk (session, 127.0.0.1)", send_at=at)
    assert released.state == "scheduled" and "scheduled for" in released.describe()
    drain(cfg, pipeline.engine, clock=clock)
    assert outbox(cfg) == []
    clock.advance(2 * 3600 + 1)
    drain(cfg, pipeline.engine, clock=clock)
    assert outbox(cfg) == [("r@example.org", f"story/{slug}")]
    history = issues.history(pipeline.engine, issues.find_issue(pipeline.engine, "story", slug).id)
    assert [(e.from_state, e.to_state, e.actor) for e in history] == [
        (None, "awaiting_approval", "service"),
        ("awaiting_approval", "scheduled", "desk (session, 127.0.0.1)"),
        ("scheduled", "sending", "service"),
        ("sending", "sent", "service"),
    ]


def test_hold_and_approve_work_for_the_back_catalogue(tmp_path: Path) -> None:
    cfg, pipeline, clock = make(tmp_path, weekly="", daily="")
    put(cfg.paths.briefs, "story-1.md", brief(1))
    put(cfg.paths.briefs, "story-2.md", brief(2))
    pipeline.build_all(workers=1)  # the first start: no email issues for what was there
    assert issues.issue_id(pipeline.engine, "story", "story-1") is None
    pipeline.hold("story-1", actor="cli (editor)")
    assert issues.find_issue(pipeline.engine, "story", "story-1").state == "held"
    assert pipeline.approve("story-2", actor="cli (editor)").state == "approved"
    with pytest.raises(StateError):
        pipeline.approve("story-1", actor="x", send_at=dt.datetime(2030, 1, 1, 7, 0))  # naive time refused
    with pytest.raises(Exception, match="no story"):
        pipeline.hold("nope", actor="x")


def test_sent_is_final(tmp_path: Path) -> None:
    cfg, pipeline, clock = make(tmp_path, weekly="", daily="")
    slug = publish(cfg, pipeline, clock, 1)
    subscribe(pipeline, "r@example.org", "instant")
    pipeline.approve(slug, actor="t")
    drain(cfg, pipeline.engine, clock=clock)
    with pytest.raises(StateError, match="story story-1 is sent"):
        pipeline.hold(slug, actor="t")
    with pytest.raises(StateError):
        pipeline.approve(slug, actor="t")
    with pipeline.engine.connect() as conn:
        assert stories.state(conn, slug) is not None


def test_a_full_build_rewrites_the_digest_pages(tmp_path: Path) -> None:
    cfg, pipeline, clock = make(tmp_path, weekly="")
    publish(cfg, pipeline, clock, 1)
    clock.at = dt.datetime(2030, 1, 7, 7, 0, 5, tzinfo=UTC)
    assert pipeline.run_digest("daily") is not None
    page = cfg.paths.public / "issues" / "digest-2030-01-07T0700.html"
    before = page.read_bytes()
    page.unlink()
    pipeline.build_all(workers=1)
    assert page.read_bytes() == before
