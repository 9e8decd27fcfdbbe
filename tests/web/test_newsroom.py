"""The desk as the newsroom's single view: broken files, the order of stories, readers, subscribers, history."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from publisher import store
from publisher.core.clock import FixedClock
from publisher.publish.pipeline import Pipeline
from publisher.store import subscribers as subscribers_store
from publisher.web.app import create_app
from tests.support.desk import csrf_from
from tests.support.folders import brief, put
from tests.support.project import build_config

UTC = dt.timezone.utc


@pytest.fixture
def newsroom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[TestClient, Pipeline, FixedClock]:
    monkeypatch.setenv("PUBLISHER_SIGNING_KEY", "k" * 64)
    monkeypatch.delenv("PUBLISHER_DESK_PASSWORD", raising=False)
    cfg = build_config(
        tmp_path, site={"timezone": "Europe/Berlin"}, schedule={"quiet_period": 0.0}, digests={"weekly": ""},
    )
    clock = FixedClock(dt.datetime(2030, 1, 6, 12, 0, tzinfo=UTC))
    pipeline = Pipeline(cfg, store.connect(cfg.store_url), clock=clock)
    pipeline.catch_up_digest()
    app = create_app(cfg, pipeline.engine, pipeline, clock=clock, no_auth=True)
    return TestClient(app, base_url="http://127.0.0.1:8000"), pipeline, clock


def test_a_new_brief_that_fails_to_parse_shows_with_its_error(newsroom: tuple[TestClient, Pipeline, FixedClock]) -> None:
    c, pipeline, _ = newsroom
    put(pipeline.cfg.paths.briefs, "broken.md", b"# A title\n\nno meta, no summary\n")
    pipeline.sync()
    page = c.get("/desk/").text
    assert "Files that do not parse (1)" in page
    m = re.search(r'<ul class="findings" id="broken">(.*?)</ul>', page, re.S)
    assert m and "broken.md" in m.group(1) and re.search(r"broken\.md:\d+: no (date|summary)", m.group(1))


def test_stories_awaiting_approval_come_first_then_scheduled_then_the_rest(newsroom: tuple[TestClient, Pipeline, FixedClock]) -> None:
    c, pipeline, clock = newsroom
    for n in (1, 2, 3, 4):
        clock.advance(60)
        put(pipeline.cfg.paths.briefs, f"story-{n}.md", brief(n))
        pipeline.sync()
    pipeline.approve("story-4", actor="t")  # newest, but no longer waiting
    pipeline.approve("story-1", actor="t", send_at=clock() + dt.timedelta(days=1))
    page = c.get("/desk/").text
    order = re.findall(r'href="/desk/story/(story-\d)"', page)
    assert order == ["story-3", "story-2", "story-1", "story-4"]
    assert "Times in Europe/Berlin." in page and "CET" in page  # times labelled with the site's zone


def test_readers_and_subscriber_counts(newsroom: tuple[TestClient, Pipeline, FixedClock]) -> None:
    c, pipeline, clock = newsroom
    now = clock()
    for address, cadence, status in (
        ("a@example.org", "instant", "active"), ("b@example.org", "instant", "active"),
        ("c@example.org", "daily", "active"), ("d@example.org", "weekly", "pending"),
    ):
        subscribers_store.add_subscriber(pipeline.engine, address, cadence, status=status, now=now)
    put(pipeline.cfg.paths.briefs, "story-1.md", brief(1))
    pipeline.sync()
    page = c.get("/desk/").text
    rows = dict(re.findall(r'<tr><th scope="row">(\w+)</th>(.*?)</tr>', page))
    assert re.findall(r"<td>(\d+)</td>", rows["instant"]) == ["2", "0", "0", "0"]
    assert re.findall(r"<td>(\d+)</td>", rows["weekly"]) == ["0", "1", "0", "0"]
    story = c.get("/desk/story/story-1").text
    assert "goes to 2 reader(s)" in story and "send to 2 reader(s)" in story


def test_approving_from_the_desk_confirms_readers_and_records_who(newsroom: tuple[TestClient, Pipeline, FixedClock]) -> None:
    c, pipeline, clock = newsroom
    put(pipeline.cfg.paths.briefs, "story-1.md", brief(1))
    pipeline.sync()
    token = csrf_from(c.get("/desk/story/story-1").text)
    c.post("/desk/story/story-1/approve", data={"csrf": token, "confirm": "yes", "send_at": "2030-01-07T09:30"})
    page = c.get("/desk/story/story-1").text
    assert "scheduled for 2030-01-07 09:30 CET" in page
    history = re.search(r'<ol class="history" id="history">(.*?)</ol>', page, re.S)
    assert history and "awaiting approval → <strong>scheduled</strong> by desk (session," in history.group(1)


def test_the_empty_digest_preview_says_why(newsroom: tuple[TestClient, Pipeline, FixedClock]) -> None:
    c, pipeline, clock = newsroom
    r = c.get("/desk/digest?cadence=daily")
    assert r.status_code == 200 and 'id="empty-digest"' in r.text
    assert "No stories since the last daily digest on 2030-01-06 13:00 CET" in r.text
    assert c.get("/desk/digest/email?cadence=daily").status_code == 404
    assert "no weekly digest is configured" in c.get("/desk/digest?cadence=weekly").text
