"""WebSub publish pings against a real HTTP server on localhost."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from publisher.core import config
from publisher.publish import websub
from publisher.publish.websub import WebSubError

from tests.support.project import build_config


class Hub:
    """A tiny hub: records each POST and answers with ``status``."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], list[tuple[str, str]]]] = []
        self.status = 204
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length).decode("ascii")
                hub.requests.append((self.path, dict(self.headers), parse_qsl(body, keep_blank_values=True)))
                self.send_response(hub.status)
                self.send_header("Content-Length", "0" if hub.status < 400 else "11")
                self.end_headers()
                if hub.status >= 400:
                    self.wfile.write(b"bad request")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hub"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub() -> Iterator[Hub]:
    h = Hub()
    yield h
    h.close()


def make_cfg(hub_url: str = "") -> config.Config:
    return build_config(None, site={"base_url": "https://news.example.org/briefs/"}, feeds={"hub": hub_url})


def test_topics_are_the_changed_feeds_only() -> None:
    cfg = make_cfg()
    changed = ["tags/ai/feed.rss", "feed.atom", "issues/x.html", "archive/1.atom", "feed.atom", "tags/ai/feed.json"]
    assert websub.topics_for(cfg, changed) == [
        "https://news.example.org/briefs/feed.atom",
        "https://news.example.org/briefs/tags/ai/feed.json",
        "https://news.example.org/briefs/tags/ai/feed.rss",
    ]


def test_ping_posts_a_publish_form(hub: Hub) -> None:
    cfg = make_cfg(hub.url)
    made = websub.ping_changed(cfg, ["feed.atom", "feed.rss", "issues/a.html"])
    assert made == 1
    [(path, headers, form)] = hub.requests
    assert path == "/hub"
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form == [
        ("hub.mode", "publish"),
        ("hub.url", "https://news.example.org/briefs/feed.atom"),
        ("hub.url", "https://news.example.org/briefs/feed.rss"),
    ]


def test_many_topics_are_split_into_batches(hub: Hub) -> None:
    topics = [f"https://news.example.org/briefs/tags/t{i}/feed.atom" for i in range(websub.MAX_TOPICS_PER_PING + 3)]
    assert websub.ping(hub.url, topics) == 2
    sent = [url for _, _, form in hub.requests for key, url in form if key == "hub.url"]
    assert sent == topics


def test_a_refusal_names_the_hub_and_status(hub: Hub) -> None:
    hub.status = 400
    with pytest.raises(WebSubError) as info:
        websub.ping(hub.url, ["https://news.example.org/briefs/feed.atom"])
    assert info.value.status == 400 and info.value.hub == hub.url
    assert "HTTP 400" in str(info.value) and "bad request" in str(info.value)


def test_an_unreachable_hub_is_an_error_not_a_hang() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens on the port any more: the connection is refused at once.
    with pytest.raises(WebSubError, match="unreachable"):
        websub.ping(f"http://127.0.0.1:{port}/", ["https://news.example.org/briefs/feed.atom"], timeout=2)


def test_nothing_is_sent_without_a_hub_or_a_changed_feed(hub: Hub) -> None:
    assert websub.ping_changed(make_cfg(), ["feed.atom"]) == 0
    assert websub.ping_changed(make_cfg(hub.url), ["issues/a.html"]) == 0
    assert hub.requests == []


@pytest.mark.parametrize("bad_hub", ["", "ftp://hub.example.org/", "javascript:alert(1)", "/relative"])
def test_only_http_hubs_and_topics(bad_hub: str) -> None:
    with pytest.raises(WebSubError):
        websub.ping(bad_hub, ["https://news.example.org/briefs/feed.atom"])
    with pytest.raises(WebSubError):
        websub.ping("https://hub.example.org/", ["feed.atom"])
