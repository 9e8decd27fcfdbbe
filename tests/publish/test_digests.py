"""The desk previews a digest through the same function the pipeline stores it with."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from publisher import store
from publisher.core.clock import FixedClock
from publisher.core.states import Cadence
from publisher.publish.digests import DigestSchedule
from publisher.publish.pipeline import Pipeline
from publisher.store import issues
from publisher.web.app import create_app
from publisher.web.deskdata import Desk
from tests.support.folders import brief, put
from tests.support.project import build_config


def test_schedule_names_periods_one_way() -> None:
    tz = dt.timezone(dt.timedelta(hours=1))
    daily = DigestSchedule(Cadence.DAILY, "0 7 * * *", tz)
    fire = daily.next_fire(dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.timezone.utc))
    assert fire == dt.datetime(2030, 1, 2, 7, 0, tzinfo=tz)
    assert daily.period_key(fire) == "2030-01-02T0700"
    assert daily.label(fire) == "Wednesday 02 January 2030"
    assert daily.cadence == "daily"
    weekly = DigestSchedule(Cadence.WEEKLY, "0 7 * * mon", tz)
    assert weekly.period_key(fire) == "2030-W01" and weekly.label(fire) == "Week of 31 December 2029"
    assert daily.previous_fire(fire + dt.timedelta(minutes=5)) == fire


@pytest.mark.parametrize("via", ["desk", "http"])
def test_desk_digest_preview_is_the_digest_that_is_stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, via: str) -> None:
    monkeypatch.setenv("PUBLISHER_SIGNING_KEY", "k" * 64)
    monkeypatch.delenv("PUBLISHER_DESK_PASSWORD", raising=False)
    cfg = build_config(tmp_path, site={"timezone": "Europe/Berlin"}, schedule={"quiet_period": 0.05}, digests={"daily": "0 7 * * *", "weekly": ""})
    clock = FixedClock(dt.datetime(2030, 1, 1, 11, 0, tzinfo=dt.timezone.utc))
    engine = store.connect(cfg.store_url)
    pipeline = Pipeline(cfg, engine, clock=clock)
    pipeline.catch_up_digest()  # first start: stories from now on go in digests
    clock.advance(60)
    for n in (1, 2):
        put(cfg.paths.briefs, f"story-{n}.md", brief(n))
    assert sorted(pipeline.sync().published) == ["story-1", "story-2"]

    if via == "desk":
        preview = Desk(cfg, engine, pipeline, clock).rendered_digest()
        subject, html, text = preview.subject, preview.html, preview.text
    else:
        with TestClient(create_app(cfg, engine, pipeline, clock=clock, no_auth=True), base_url="http://127.0.0.1:8000") as c:
            page = c.get("/desk/digest").text
        preview = Desk(cfg, engine, pipeline, clock).rendered_digest()
        subject, html, text = preview.subject, preview.html, preview.text
        assert subject in page.replace("&amp;", "&")
        # The label readers see (not the period key) is the digest's h1; the subject is the headlines.
        assert "<h1" in html and "Wednesday 02 January 2030</h1>" in html
        assert subject.endswith(" + 1 more") and len(subject) <= 70

    clock.at = dt.datetime(2030, 1, 2, 6, 0, 30, tzinfo=dt.timezone.utc)  # 07:00:30 in Berlin
    issue_id = pipeline.run_digest()
    assert issue_id is not None
    stored = issues.get_issue(engine, issue_id)
    assert stored.key == "2030-01-02T0700"
    assert (stored.subject, stored.html, stored.text) == (subject, html, text)
