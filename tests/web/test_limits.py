"""What one client can make the server hold: bodies, headers, slow request heads (a real uvicorn server)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from publisher import store
from publisher.core.config import Config
from publisher.web import guard
from publisher.web import server as web_server

from tests.support.desk import RecordingPipeline, add_story, make_config, write_public
from tests.support.live import LiveServer

MB = 1024 * 1024


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LiveServer, Config, sa.Engine]]:
    monkeypatch.setenv("PUBLISHER_SIGNING_KEY", "k" * 64)
    monkeypatch.delenv("PUBLISHER_DESK_PASSWORD", raising=False)
    monkeypatch.setattr(web_server, "HEAD_DEADLINE_SECONDS", 1.0)
    cfg = make_config(tmp_path)
    write_public(cfg)
    engine = store.connect(cfg.store_url)
    add_story(engine, "alpha")
    srv = LiveServer(cfg, engine, RecordingPipeline(cfg, engine))
    srv.start()
    yield srv, cfg, engine
    srv.stop()
    engine.dispose()


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


def _post_raw(port: int, path: str, size: int, *, chunked: bool) -> bytes:
    """Send a ``size``-byte POST from one reused 64 KB buffer; the status line the server answered."""
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {size}\r\n\r\n"
    block = b"email=" + b"a" * (64 * 1024 - 6)
    frame = (f"{len(block):x}\r\n".encode() + block + b"\r\n") if chunked else block
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode())
        try:
            for _ in range(size // len(block)):
                sock.sendall(frame)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed before the upload ended: the point
        return sock.recv(200).split(b"\r\n", 1)[0]


@pytest.mark.parametrize("chunked", [False, True])
def test_an_8_mb_post_is_413_without_growing_the_server(live: tuple[LiveServer, Config, sa.Engine], chunked: bool) -> None:
    srv, _, _ = live
    _post_raw(srv.port, "/subscribe", 64 * 1024, chunked=chunked)  # warm up parsers and pools
    before = rss_bytes()
    for _ in range(3):
        status = _post_raw(srv.port, "/subscribe", 8 * MB, chunked=chunked)
        assert status.startswith(b"HTTP/1.1 413"), status
    growth = rss_bytes() - before
    print(f"RSS growth over three 8 MB POSTs ({'chunked' if chunked else 'Content-Length'}): {growth / MB:.2f} MB")
    assert growth < 20 * MB, f"RSS grew {growth / MB:.1f} MB"


def test_desk_routes_take_up_to_1_mb(live: tuple[LiveServer, Config, sa.Engine]) -> None:
    srv, _, _ = live
    assert guard.body_limit_for("/desk/story/alpha/test") == guard.DESK_BODY_LIMIT
    assert guard.body_limit_for("/subscribe") == guard.PUBLIC_BODY_LIMIT
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        # Under the desk's limit the request reaches the desk (and fails its CSRF check).
        assert c.post("/desk/story/alpha/hold", content=b"x=" + b"a" * (512 * 1024)).status_code == 403
        assert c.post("/desk/story/alpha/hold", content=b"x=" + b"a" * (2 * MB)).status_code == 413
        assert c.post("/subscribe", content=b"x=" + b"a" * (100 * 1024)).status_code == 413


def test_oversized_headers_are_refused(live: tuple[LiveServer, Config, sa.Engine]) -> None:
    srv, _, _ = live
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(b"GET /feed.atom HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * (64 * 1024) + b"\r\n\r\n")
        status = sock.recv(200).split(b"\r\n", 1)[0]
    assert status.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400")), status
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        assert c.get("/feed.atom", headers={"X-Small": "a" * 1000}).status_code == 200


def test_a_slow_request_head_is_cut_off(live: tuple[LiveServer, Config, sa.Engine]) -> None:
    srv, _, _ = live
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(b"GET /feed.atom HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        started = time.monotonic()
        assert sock.recv(100) == b""  # closed by the server
        assert time.monotonic() - started < 8


def test_too_many_headers_are_refused(live: tuple[LiveServer, Config, sa.Engine]) -> None:
    srv, _, _ = live
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        assert c.get("/feed.atom", headers={f"X-H{i}": "v" for i in range(200)}).status_code == 431


def test_a_stalled_request_body_gets_408(live: tuple[LiveServer, Config, sa.Engine], monkeypatch: pytest.MonkeyPatch) -> None:
    srv, _, _ = live
    monkeypatch.setattr(guard, "BODY_IDLE_SECONDS", 1.0)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(b"POST /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nemail=a")
        started = time.monotonic()
        status = sock.recv(200).split(b"\r\n", 1)[0]
        assert status.startswith(b"HTTP/1.1 408"), status
        assert time.monotonic() - started < 8
