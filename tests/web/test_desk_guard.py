"""The desk cannot be driven from outside: Host allow-list, Origin checks, the startup sign-in token,
the throttle on the real peer (form and bearer), revocable sessions."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from publisher import store
from publisher.core.config import Config
from publisher.core.errors import ConfigError
from publisher.publish.pipeline import Pipeline
from publisher.web import app as web_app
from publisher.web import auth as webauth
from publisher.web import server as web_server

from tests.support.desk import PASSWORD, RecordingPipeline, add_story, csrf_from, make_config, sign_in, write_public
from tests.support.live import LiveServer

BASE = "http://127.0.0.1:8000"
FOREIGN = "http://rebind.attacker.example"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Config, sa.Engine]]:
    monkeypatch.setenv("PUBLISHER_SIGNING_KEY", "k" * 64)
    monkeypatch.delenv("PUBLISHER_DESK_PASSWORD", raising=False)
    cfg = make_config(tmp_path)
    write_public(cfg)
    engine = store.connect(cfg.store_url)
    add_story(engine, "alpha")
    yield cfg, engine
    engine.dispose()


@pytest.fixture
def locked(env: tuple[Config, sa.Engine], monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, RecordingPipeline]]:
    monkeypatch.setenv("PUBLISHER_DESK_PASSWORD", PASSWORD)
    cfg, engine = env
    pipeline = RecordingPipeline(cfg, engine)
    with TestClient(web_app.create_app(cfg, engine, pipeline), base_url=BASE) as c:
        yield c, pipeline


# ------------------------------------------------------------------ Host and Origin


@pytest.mark.parametrize("path", ["/desk/", "/desk/story/alpha", "/feed.atom", "/subscribe", "/"])
def test_foreign_host_gets_400(locked: tuple[TestClient, RecordingPipeline], path: str) -> None:
    c, _ = locked
    r = c.get(path, headers={"Host": "rebind.attacker.example"}, follow_redirects=False)
    assert r.status_code == 400
    assert c.get(path, headers={"Host": "127.0.0.1:8000"}, follow_redirects=False).status_code in (200, 303)


def test_allowed_hosts_come_from_base_url_bind_and_config(env: tuple[Config, sa.Engine]) -> None:
    import dataclasses

    from publisher.web.guard import allowed_hosts

    cfg, _ = env
    cfg = dataclasses.replace(
        cfg, site=dataclasses.replace(cfg.site, base_url="https://briefs.example.org/"),
        desk=dataclasses.replace(cfg.desk, host="10.0.0.5", allowed_hosts="desk.example.org, Other.Example"),
    )
    assert allowed_hosts(cfg) == ["briefs.example.org", "10.0.0.5", "desk.example.org", "other.example"]


def test_foreign_origin_with_a_valid_token_is_403(locked: tuple[TestClient, RecordingPipeline]) -> None:
    c, pipeline = locked
    token = sign_in(c)
    r = c.post("/desk/story/alpha/approve", data={"csrf": token}, headers={"Origin": FOREIGN}, follow_redirects=False)
    assert r.status_code == 403
    r = c.post("/desk/story/alpha/hold", data={"csrf": token}, headers={"Sec-Fetch-Site": "cross-site"}, follow_redirects=False)
    assert r.status_code == 403
    assert pipeline.calls == []
    # The desk's own origin (or a same-origin fetch under no-referrer, "Origin: null") passes.
    r = c.post("/desk/story/alpha/hold", data={"csrf": token}, headers={"Origin": BASE}, follow_redirects=False)
    assert r.status_code == 303
    r = c.post("/desk/story/alpha/approve", data={"csrf": token, "confirm": "yes"}, headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"}, follow_redirects=False)
    assert r.status_code == 303
    assert pipeline.calls == [("hold", "alpha"), ("approve", "alpha")]


def test_login_from_a_foreign_origin_is_403(locked: tuple[TestClient, RecordingPipeline]) -> None:
    c, _ = locked
    token = csrf_from(c.get("/desk/login").text)
    r = c.post("/desk/login", data={"password": PASSWORD, "csrf": token}, headers={"Origin": FOREIGN})
    assert r.status_code == 403


# ------------------------------------------------------------------ the open desk's startup token


def test_open_desk_without_its_startup_token_is_401(env: tuple[Config, sa.Engine]) -> None:
    cfg, engine = env
    app = web_app.create_app(cfg, engine, RecordingPipeline(cfg, engine), desk_token="s" * 43)
    with TestClient(app, base_url=BASE) as c:
        for path in ("/desk/", "/desk/story/alpha", "/desk/digest", "/desk/events?kind=story&key=alpha"):
            assert c.get(path, follow_redirects=False).status_code == 401, path
        assert c.post("/desk/story/alpha/approve", data={"csrf": "x"}).status_code == 401
        assert c.get("/desk/login?token=wrong").status_code == 401
        assert c.get("/desk/", headers={"Authorization": "Bearer wrong"}).status_code == 401
        # The printed link signs in once; the cookie carries on, the token leaves the address bar.
        r = c.get("/desk/login?token=" + "s" * 43, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/desk/"
        page = c.get("/desk/")
        assert page.status_code == 200 and "Title of alpha" in page.text
    with TestClient(app, base_url=BASE) as script:
        assert script.get("/desk/", headers={"Authorization": "Bearer " + "s" * 43}).status_code == 200


def test_each_start_has_a_new_token_and_no_auth_is_loud(env: tuple[Config, sa.Engine], caplog: pytest.LogCaptureFixture) -> None:
    cfg, engine = env
    one = web_server.make_server(cfg, engine, Pipeline(cfg, engine), port=8000)
    two = web_server.make_server(cfg, engine, Pipeline(cfg, engine), port=8000)
    url_one, url_two = web_server.sign_in_url(one), web_server.sign_in_url(two)
    assert url_one and url_two and url_one != url_two
    assert re.fullmatch(r"http://127\.0\.0\.1:8000/desk/login\?token=[A-Za-z0-9_-]{43}", url_one)
    with caplog.at_level("WARNING"):
        open_one = web_server.make_server(cfg, engine, Pipeline(cfg, engine), no_auth=True)
    assert web_server.sign_in_url(open_one) is None
    assert "WITHOUT AUTHENTICATION" in caplog.text


# ------------------------------------------------------------------ bind and password length


def test_short_password_refused_beyond_loopback(env: tuple[Config, sa.Engine], monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, _ = env
    monkeypatch.setenv("PUBLISHER_DESK_PASSWORD", "a")
    with pytest.raises(ConfigError) as exc:
        webauth.check_bind(cfg, "0.0.0.0")
    assert "at least 12" in str(exc.value) and "PUBLISHER_DESK_PASSWORD" in str(exc.value)
    webauth.check_bind(cfg, "127.0.0.1")  # loopback: the editor's own choice
    monkeypatch.setenv("PUBLISHER_DESK_PASSWORD", "twelve chars")
    webauth.check_bind(cfg, "0.0.0.0")


# ------------------------------------------------------------------ the throttle on the real peer


@pytest.fixture
def live_locked(env: tuple[Config, sa.Engine], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("PUBLISHER_DESK_PASSWORD", PASSWORD)
    cfg, engine = env
    srv = LiveServer(cfg, engine, RecordingPipeline(cfg, engine), no_auth=False)
    srv.start()
    yield srv.url
    srv.stop()


def test_rotating_x_forwarded_for_does_not_escape_the_throttle(live_locked: str) -> None:
    with httpx.Client(base_url=live_locked, timeout=10) as c:
        token = csrf_from(c.get("/desk/login").text)
        codes = [
            c.post("/desk/login", data={"password": f"guess {i}", "csrf": token}, headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
            for i in range(40)
        ]
    assert codes.count(401) == webauth.MAX_FAILURES
    assert codes[webauth.MAX_FAILURES:] == [429] * (40 - webauth.MAX_FAILURES)


def test_wrong_bearer_tokens_are_throttled(live_locked: str) -> None:
    with httpx.Client(base_url=live_locked, timeout=10) as c:
        codes = [c.get("/desk/", headers={"Authorization": f"Bearer guess-{i}", "X-Forwarded-For": f"198.51.100.{i}"}).status_code for i in range(40)]
        last = c.get("/desk/", headers={"Authorization": f"Bearer {PASSWORD}"})
    assert codes.count(401) == webauth.MAX_FAILURES
    assert codes[webauth.MAX_FAILURES:] == [429] * (40 - webauth.MAX_FAILURES)
    assert last.status_code == 429 and int(last.headers["Retry-After"]) > 0


def test_the_throttle_is_shared_through_the_store(env: tuple[Config, sa.Engine], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUBLISHER_DESK_PASSWORD", PASSWORD)
    cfg, engine = env
    other_engine = store.connect(cfg.store_url)  # a second process would open its own engine
    first = TestClient(web_app.create_app(cfg, engine, RecordingPipeline(cfg, engine)), base_url=BASE)
    second = TestClient(web_app.create_app(cfg, other_engine, RecordingPipeline(cfg, other_engine)), base_url=BASE)
    for _ in range(webauth.MAX_FAILURES):
        assert first.get("/desk/", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert second.get("/desk/", headers={"Authorization": f"Bearer {PASSWORD}"}).status_code == 429
    other_engine.dispose()


# ------------------------------------------------------------------ sessions


def test_a_captured_cookie_fails_after_logout(locked: tuple[TestClient, RecordingPipeline]) -> None:
    c, pipeline = locked
    token = sign_in(c)
    captured = c.cookies.get(webauth.SESSION_COOKIE)
    assert captured
    assert c.post("/desk/logout", data={"csrf": token}, follow_redirects=False).status_code == 303
    with TestClient(c.app, base_url=BASE, cookies={webauth.SESSION_COOKIE: captured}) as thief:
        assert thief.get("/desk/", follow_redirects=False).status_code == 303
        assert thief.post("/desk/story/alpha/approve", data={"csrf": token}).status_code == 401
    assert pipeline.calls == []


def test_a_password_change_revokes_older_cookies(env: tuple[Config, sa.Engine], monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, engine = env
    monkeypatch.setenv("PUBLISHER_DESK_PASSWORD", PASSWORD)
    with TestClient(web_app.create_app(cfg, engine, RecordingPipeline(cfg, engine)), base_url=BASE) as c:
        sign_in(c)
        captured = c.cookies.get(webauth.SESSION_COOKIE)
    monkeypatch.setenv("PUBLISHER_DESK_PASSWORD", "a brand new passphrase")
    app = web_app.create_app(cfg, engine, RecordingPipeline(cfg, engine))
    with TestClient(app, base_url=BASE, cookies={webauth.SESSION_COOKIE: str(captured)}) as after:
        assert after.get("/desk/", follow_redirects=False).status_code == 303


# ------------------------------------------------------------------ framing and empty states


@pytest.mark.parametrize("path", ["/issues/some-story.html", "/issues/some-story", "/", "/feed.atom", "/subscribe", "/nope"])
def test_public_pages_have_a_strict_csp_and_cannot_be_framed(locked: tuple[TestClient, RecordingPipeline], path: str) -> None:
    c, _ = locked
    r = c.get(path)
    csp = r.headers["content-security-policy"]
    assert re.search(r"default-src '(self|none)'", csp) and "frame-ancestors 'none'" in csp
    assert "script-src 'unsafe-inline'" not in csp
    assert r.headers["x-frame-options"] == "DENY"
    etag = r.headers.get("etag")
    if etag:  # a 304 carries them too
        again = c.get(path, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.headers["x-frame-options"] == "DENY"


def test_desk_preview_frames_stay_sandboxed_and_same_origin_only(locked: tuple[TestClient, RecordingPipeline]) -> None:
    c, _ = locked
    sign_in(c)
    page = c.get("/desk/story/alpha")
    assert page.headers["x-frame-options"] == "DENY"
    frames = re.findall(r"<iframe[^>]*>", page.text)
    assert frames and all('sandbox="' in f and "allow-scripts" not in f and "allow-same-origin" not in f for f in frames)
    frame = c.get("/desk/story/alpha/email")
    assert frame.headers["x-frame-options"] == "SAMEORIGIN"
    assert "frame-ancestors 'self'" in frame.headers["content-security-policy"]


def test_desk_routes_with_nothing_to_show_answer_4xx_with_a_message(env: tuple[Config, sa.Engine]) -> None:
    cfg, engine = env
    add_story(engine, "broken", source=b"not a brief at all")
    with TestClient(web_app.create_app(cfg, engine, Pipeline(cfg, engine), no_auth=True), base_url=BASE, raise_server_exceptions=False) as c:
        for path in ("/desk/story/broken/email", "/desk/story/broken/feed", "/desk/story/missing/email", "/desk/story/missing/feed"):
            r = c.get(path)
            assert 400 <= r.status_code < 500 and r.text.strip(), path
        assert c.get("/desk/story/broken").status_code == 200  # the page itself shows the error


def test_digest_preview_with_no_stories_is_4xx_not_500(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUBLISHER_SIGNING_KEY", "k" * 64)
    monkeypatch.delenv("PUBLISHER_DESK_PASSWORD", raising=False)
    cfg = make_config(tmp_path)
    engine = store.connect(cfg.store_url)
    with TestClient(web_app.create_app(cfg, engine, Pipeline(cfg, engine), no_auth=True), base_url=BASE, raise_server_exceptions=False) as c:
        assert c.get("/desk/digest").status_code == 200
        r = c.get("/desk/digest/email")
        assert r.status_code == 404 and "no stories for the next daily digest" in r.text
        assert c.get("/desk/").status_code == 200
    engine.dispose()


# ------------------------------------------------------------------ the printed sign-in link, end to end


def test_publisher_serve_prints_a_sign_in_link_that_opens_the_desk(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.support.ports import free_port

    port = free_port()
    (tmp_path / "public").mkdir()
    (tmp_path / "config.toml").write_text(f'[site]\nbase_url = "http://127.0.0.1:{port}/"\n[desk]\nport = {port}\n')
    env = {k: v for k, v in os.environ.items() if k != "PUBLISHER_DESK_PASSWORD"} | {"PUBLISHER_SIGNING_KEY": "k" * 64}
    exe = Path(sys.executable).with_name("publisher")
    proc = subprocess.Popen([str(exe), "serve", "--config", str(tmp_path / "config.toml")], stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        link = ""
        deadline = time.monotonic() + 30
        while not link and time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line, "publisher serve exited before printing its sign-in link"
            if "/desk/login?token=" in line:
                link = line.strip()
        assert link.startswith(f"http://127.0.0.1:{port}/desk/login?token=")
        with httpx.Client(timeout=10, follow_redirects=True) as c:
            for _ in range(100):
                try:
                    first = c.get(f"http://127.0.0.1:{port}/desk/")
                    break
                except httpx.ConnectError:
                    time.sleep(0.1)
            assert first.status_code == 401
            assert c.get(link).status_code == 200  # follows the redirect to the desk with its cookie
            assert c.get(f"http://127.0.0.1:{port}/desk/").status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)


def test_throttle_rows_expire_with_their_window(env: tuple[Config, sa.Engine]) -> None:
    import datetime as dt

    from publisher.store import schema
    from publisher.web.throttle import Throttle

    _, engine = env
    now = [dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc)]
    throttle = Throttle(engine, "test", limit=3, window=300, clock=lambda: now[0])
    for i in range(500):  # rotating peers: each one fresh
        throttle.hit(f"198.51.100.{i % 250}/{i}")
    assert throttle.retry_after("198.51.100.0/0") == 0
    for _ in range(3):
        throttle.hit("203.0.113.9")
    assert 0 < throttle.retry_after("203.0.113.9") <= 300
    now[0] += dt.timedelta(seconds=301)
    assert throttle.retry_after("203.0.113.9") == 0
    throttle.hit("203.0.113.10")
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.throttle_hits)).scalar_one() == 1
