"""The live side of the web app against a real uvicorn server on loopback:
server-sent events on brief changes, clean ends on disconnect and shutdown,
and the subscribe → confirm → unsubscribe round trip through real mail."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import email.utils
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from publisher import store
from publisher.core.config import Config
from publisher.store import schema
from publisher.web import server as web_server

from tests.support.desk import RecordingPipeline, add_story, make_config, write_public
from tests.support.live import LiveServer


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LiveServer, Config, sa.Engine]]:
    monkeypatch.setenv("PUBLISHER_SIGNING_KEY", "k" * 64)
    monkeypatch.delenv("PUBLISHER_DESK_PASSWORD", raising=False)
    cfg = make_config(tmp_path)
    write_public(cfg)
    engine = store.connect(cfg.store_url)
    add_story(engine, "alpha")
    srv = LiveServer(cfg, engine, RecordingPipeline(cfg, engine))
    srv.start()
    yield srv, cfg, engine
    srv.stop()
    engine.dispose()


def read_events(resp: httpx.Response, want: int) -> list[str]:
    """Collect ``want`` named events from an open SSE response."""
    events: list[str] = []
    for line in resp.iter_lines():
        if line.startswith("event: "):
            events.append(line.removeprefix("event: "))
            if len(events) >= want:
                break
    return events


def touch_story(engine: sa.Engine, slug: str, content_hash: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.update(schema.stories).where(schema.stories.c.slug == slug).values(content_hash=content_hash))


def test_event_stream_announces_a_changed_story(live: tuple[LiveServer, Config, sa.Engine]) -> None:
    srv, _, engine = live
    with httpx.Client(timeout=30) as client:
        with client.stream("GET", f"{srv.url}/desk/events?kind=story&key=alpha") as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            lines = resp.iter_lines()
            assert next(lines).startswith("retry:")
            threading.Timer(0.3, touch_story, (engine, "alpha", "0" * 64)).start()
            events: list[str] = []
            for line in lines:
                if line.startswith("event: "):
                    events.append(line)
                    data = next(lines)
                    assert data == "data: story/alpha"
                    break
            assert events == ["event: changed"]


def test_event_stream_ends_on_client_disconnect(live: tuple[LiveServer, Config, sa.Engine], caplog: pytest.LogCaptureFixture) -> None:
    srv, _, _ = live
    caplog.set_level(logging.DEBUG, logger="publisher.web")
    with httpx.Client(timeout=30) as client:
        with client.stream("GET", f"{srv.url}/desk/events?kind=story&key=alpha") as resp:
            next(resp.iter_lines())
    # The server notices the closed socket and drops the stream; with no
    # open responses left, the next shutdown is immediate.
    deadline = time.monotonic() + 10
    while srv.server.server_state.tasks and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not srv.server.server_state.tasks


def test_server_shutdown_ends_open_streams(live: tuple[LiveServer, Config, sa.Engine], caplog: pytest.LogCaptureFixture) -> None:
    srv, _, _ = live
    caplog.set_level(logging.INFO)
    with httpx.Client(timeout=30) as client:
        with client.stream("GET", f"{srv.url}/desk/events?kind=story&key=alpha") as resp:
            lines = resp.iter_lines()
            next(lines)
            srv.server.should_exit = True
            # The stream ends (not cut by the graceful-shutdown timeout) and the server exits.
            rest = list(lines)
    srv.thread.join(timeout=15)
    assert not srv.thread.is_alive()
    assert all(not line.startswith("event:") for line in rest)
    assert "timeout graceful shutdown exceeded" not in caplog.text


def test_idle_server_wakes_once_a_second_and_keeps_its_date_header(live: tuple[LiveServer, Config, sa.Engine]) -> None:
    """uvicorn's own loop ticks ten times a second (0.2 % of a core idle); this one once, for the Date header."""
    srv, _, _ = live
    ticks: list[int] = []
    on_tick = srv.server.on_tick

    async def counted(counter: int) -> bool:
        ticks.append(counter)
        return await on_tick(counter)

    srv.server.on_tick = counted  # type: ignore[method-assign]
    time.sleep(2.5)
    # At most three or four ticks in 2.5 s (uvicorn's loop: 25), each one refreshing the header.
    assert 1 <= len(ticks) <= 4
    assert all(counter % 10 == 0 for counter in ticks)
    with httpx.Client() as client:
        date = client.get(f"{srv.url}/feed.atom").headers["date"]
    sent = email.utils.parsedate_to_datetime(date)
    assert abs((dt.datetime.now(dt.timezone.utc) - sent).total_seconds()) < 5


def test_stop_wakes_the_idle_server(live: tuple[LiveServer, Config, sa.Engine], monkeypatch: pytest.MonkeyPatch) -> None:
    """should_exit wakes the loop at once: with a 60 s tick the server still stops well within the join's 15 s."""
    srv, _, _ = live
    monkeypatch.setattr(web_server, "TICK_SECONDS", 60.0)
    time.sleep(1.5)  # the loop is now inside a 60 s wait
    srv.server.should_exit = True
    srv.thread.join(timeout=15)
    assert not srv.thread.is_alive()


def test_public_feed_over_real_http(live: tuple[LiveServer, Config, sa.Engine]) -> None:
    srv, _, _ = live
    with httpx.Client() as client:
        r = client.get(f"{srv.url}/feed.atom")
        assert r.status_code == 200
        assert client.get(f"{srv.url}/feed.atom", headers={"If-None-Match": r.headers["etag"]}).status_code == 304
        # Raw traversal that no client library would normalise away.
        with socket.create_connection(("127.0.0.1", srv.port)) as sock:
            sock.sendall(b"GET /../state/publisher.db.atom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head = sock.recv(200)
        assert head.startswith(b"HTTP/1.1 404") or head.startswith(b"HTTP/1.1 400")
