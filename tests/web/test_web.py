"""HTTP tests of the web app: public files, forms, desk access, CSRF, traversal.

Driven through Starlette's TestClient (httpx); the live event stream is
tested against a real uvicorn server in test_web_live.py.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from publisher.core import config as config_mod
from publisher.web import auth as webauth
from publisher import store
from publisher.core.config import Config
from publisher.core.errors import ConfigError
from publisher.publish.pipeline import Pipeline
from publisher.store import schema
from publisher.store import subscribers as subscribers_store
from publisher.web import app as web_app
from publisher.web import preview as web_preview
from publisher.web import public as web_public
from publisher.web import server as web_server

from tests.support.desk import (
    csrf_from,
    sign_in,
    NOW,
    PASSWORD,
    RecordingPipeline,
    add_story,
    issue_state,
    make_config,
    set_issue_state,
    write_public,
)
from tests.support.files import REFERENCE


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Config, sa.Engine]]:
    monkeypatch.setenv("PUBLISHER_SIGNING_KEY", "k" * 64)
    monkeypatch.delenv("PUBLISHER_DESK_PASSWORD", raising=False)
    cfg = make_config(tmp_path)
    write_public(cfg)
    engine = store.connect(cfg.store_url)
    yield cfg, engine
    engine.dispose()


@pytest.fixture
def client(env: tuple[Config, sa.Engine]) -> Iterator[TestClient]:
    cfg, engine = env
    with TestClient(web_app.create_app(cfg, engine, Pipeline(cfg, engine), no_auth=True), base_url="http://127.0.0.1:8000") as c:
        yield c


@pytest.fixture
def locked(env: tuple[Config, sa.Engine], monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, RecordingPipeline]]:
    """A desk with a password set and the pipeline behind it."""
    monkeypatch.setenv("PUBLISHER_DESK_PASSWORD", PASSWORD)
    cfg, engine = env
    pipeline = RecordingPipeline(cfg, engine)
    add_story(engine, "alpha")
    with TestClient(web_app.create_app(cfg, engine, pipeline), base_url="http://127.0.0.1:8000") as c:
        yield c, pipeline


# ------------------------------------------------------------------ public files


@pytest.mark.parametrize(
    ("path", "ctype"),
    [
        ("/feed.atom", "application/atom+xml; charset=utf-8"),
        ("/feed.rss", "application/rss+xml; charset=utf-8"),
        ("/feed.json", "application/feed+json; charset=utf-8"),
        ("/tags/energy/feed.atom", "application/atom+xml; charset=utf-8"),
        ("/issues/some-story.html", "text/html; charset=utf-8"),
        ("/issues/some-story", "text/html; charset=utf-8"),
        ("/", "text/html; charset=utf-8"),
    ],
)
def test_public_files_have_type_validators_and_cache_control(client: TestClient, env: tuple[Config, sa.Engine], path: str, ctype: str) -> None:
    r = client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"] == ctype
    assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+"', r.headers["etag"])
    assert r.headers["last-modified"].endswith("GMT")
    assert "max-age=" in r.headers["cache-control"]
    assert r.headers["x-content-type-options"] == "nosniff"


def test_feed_body_is_the_file(client: TestClient, env: tuple[Config, sa.Engine]) -> None:
    cfg, _ = env
    assert client.get("/feed.atom").content == (cfg.paths.public / "feed.atom").read_bytes()
    assert client.get("/feed.atom").headers["cache-control"] == web_public.CACHE_FEED


def test_conditional_get_etag_gives_304_without_body(client: TestClient) -> None:
    first = client.get("/feed.atom")
    etag = first.headers["etag"]
    r = client.get("/feed.atom", headers={"If-None-Match": etag})
    assert r.status_code == 304
    assert r.content == b""
    assert r.headers["etag"] == etag
    assert r.headers["cache-control"] == web_public.CACHE_FEED
    # A list of tags and the weak form both match (RFC 9110 weak comparison).
    assert client.get("/feed.atom", headers={"If-None-Match": f'"nope", W/{etag}'}).status_code == 304
    assert client.get("/feed.atom", headers={"If-None-Match": '"other"'}).status_code == 200


def test_conditional_get_if_modified_since(client: TestClient) -> None:
    lm = client.get("/feed.rss").headers["last-modified"]
    assert client.get("/feed.rss", headers={"If-Modified-Since": lm}).status_code == 304
    assert client.get("/feed.rss", headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}).status_code == 200
    assert client.get("/feed.rss", headers={"If-Modified-Since": "garbage"}).status_code == 200
    # If-None-Match takes precedence: a mismatching tag wins over a fresh date.
    assert client.get("/feed.rss", headers={"If-Modified-Since": lm, "If-None-Match": '"x"'}).status_code == 200


def test_changed_file_gets_new_etag_and_fresh_body(client: TestClient, env: tuple[Config, sa.Engine]) -> None:
    cfg, _ = env
    feed = cfg.paths.public / "feed.atom"
    old = client.get("/feed.atom")
    feed.write_text("<feed>changed and longer</feed>")
    st = feed.stat()
    os.utime(feed, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    r = client.get("/feed.atom", headers={"If-None-Match": old.headers["etag"]})
    assert r.status_code == 200
    assert r.content == b"<feed>changed and longer</feed>"
    assert r.headers["etag"] != old.headers["etag"]


def test_head_has_headers_and_no_body(client: TestClient) -> None:
    r = client.head("/feed.json")
    assert r.status_code == 200
    assert r.content == b""
    assert int(r.headers["content-length"]) > 10
    assert r.headers["content-type"].startswith("application/feed+json")


@pytest.mark.parametrize(
    "path",
    [
        "/nothing.atom",
        "/../config.toml",
        "/%2e%2e/state/publisher.db.atom",
        "/..%2fstate%2fpublisher.db.atom",
        "/issues/../../state/publisher.db.atom",
        "/.secret.atom",
        "/%2esecret.atom",
        "/state.db",
        "/tags/",
        "/issues/..%5c..%5cconfig.toml",
        "/feed.atom%00.html",
        "//etc/passwd",
        "/etc/passwd",
        "/_web/../../pyproject.toml",
        "/_web/missing.css",
    ],
)
def test_unknown_paths_and_traversal_get_404(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404
    assert b"outside" not in r.content and b"SQLite" not in r.content and b"hidden" not in r.content


def test_symlink_out_of_public_is_not_served(client: TestClient, env: tuple[Config, sa.Engine]) -> None:
    cfg, _ = env
    (cfg.paths.public / "escape.atom").symlink_to(cfg.paths.state / "publisher.db.atom")
    (cfg.paths.public / "inside.atom").symlink_to(cfg.paths.public / "feed.atom")
    assert client.get("/escape.atom").status_code == 404
    assert client.get("/inside.atom").status_code == 200


def test_writes_to_public_paths_are_refused(client: TestClient) -> None:
    r = client.post("/feed.atom", content=b"x")
    assert r.status_code == 405
    assert "GET" in r.headers["allow"]


def test_not_found_page_is_html_and_escapes_nothing_from_the_path(client: TestClient) -> None:
    r = client.get("/<script>alert(1)</script>.html")
    assert r.status_code == 404
    assert "<script>alert" not in r.text


def test_public_file_requests_do_not_touch_the_database(env: tuple[Config, sa.Engine]) -> None:
    cfg, engine = env
    seen: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    with TestClient(web_app.create_app(cfg, engine, Pipeline(cfg, engine), no_auth=True), base_url="http://127.0.0.1:8000") as c:
        etag = c.get("/feed.atom").headers["etag"]
        c.get("/feed.atom", headers={"If-None-Match": etag})
        c.get("/issues/some-story")
    assert seen == []


def test_desk_stylesheet_is_served(client: TestClient) -> None:
    r = client.get("/_web/desk.css")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")


# ------------------------------------------------------------------ bind and access


def test_refuses_non_loopback_without_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PUBLISHER_DESK_PASSWORD", raising=False)
    cfg = make_config(tmp_path, host="0.0.0.0")
    with pytest.raises(ConfigError) as exc:
        webauth.check_bind(cfg, "0.0.0.0")
    assert "desk.host" in str(exc.value) and "PUBLISHER_DESK_PASSWORD" in str(exc.value)
    engine = store.connect("sqlite://")
    with pytest.raises(ConfigError):
        web_app.create_app(cfg, engine, Pipeline(cfg, engine))
    with pytest.raises(ConfigError):
        web_server.make_server(cfg, engine, Pipeline(cfg, engine), host="192.168.1.5")
    monkeypatch.setenv("PUBLISHER_DESK_PASSWORD", PASSWORD)
    webauth.check_bind(cfg, "0.0.0.0")  # credentials configured: allowed


@pytest.mark.parametrize(("host", "loop"), [("127.0.0.1", True), ("::1", True), ("[::1]", True), ("localhost", True), ("127.0.0.2", True), ("0.0.0.0", False), ("::", False), ("10.0.0.1", False), ("example.org", False)])
def test_loopback_detection(host: str, loop: bool) -> None:
    assert webauth.is_loopback(host) is loop


def test_open_desk_on_loopback_says_so(client: TestClient, env: tuple[Config, sa.Engine]) -> None:
    _, engine = env
    add_story(engine, "alpha")
    r = client.get("/desk/")
    assert r.status_code == 200
    assert "Open desk: no password is set" in r.text
    assert "Title of alpha" in r.text


def test_desk_requires_sign_in(locked: tuple[TestClient, RecordingPipeline]) -> None:
    c, _ = locked
    for path in ("/desk/", "/desk/story/alpha", "/desk/digest", "/desk/story/alpha/email"):
        r = c.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"] == "/desk/login"
    assert c.get("/desk/events?kind=story&key=alpha").status_code == 401
    assert c.post("/desk/story/alpha/approve", data={"csrf": "x"}).status_code == 401
    assert c.get("/desk", follow_redirects=False).status_code == 308


def test_wrong_password_is_refused_and_throttled(locked: tuple[TestClient, RecordingPipeline]) -> None:
    c, _ = locked
    token = csrf_from(c.get("/desk/login").text)
    for _ in range(webauth.MAX_FAILURES):
        assert c.post("/desk/login", data={"password": "nope", "csrf": token}).status_code == 401
    r = c.post("/desk/login", data={"password": PASSWORD, "csrf": token})
    assert r.status_code == 429  # even the right password waits out the window
    assert c.get("/desk/", follow_redirects=False).status_code == 303


def test_sign_in_sets_signed_session_cookie(locked: tuple[TestClient, RecordingPipeline]) -> None:
    c, _ = locked
    sign_in(c)
    cookie = next(ck for ck in c.cookies.jar if ck.name == webauth.SESSION_COOKIE)
    assert cookie.path == "/desk"
    assert "Title of alpha" in c.get("/desk/").text
    # A tampered cookie is not a session.
    value = cookie.value
    c.cookies.clear()
    c.cookies.set(webauth.SESSION_COOKIE, value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB"), path="/desk")
    assert c.get("/desk/", follow_redirects=False).status_code == 303


def test_login_post_needs_csrf(locked: tuple[TestClient, RecordingPipeline]) -> None:
    c, _ = locked
    c.get("/desk/login")
    assert c.post("/desk/login", data={"password": PASSWORD}).status_code == 403
    assert c.post("/desk/login", data={"password": PASSWORD, "csrf": "forged"}).status_code == 403


def test_session_is_renewed_on_sign_in(locked: tuple[TestClient, RecordingPipeline]) -> None:
    c, _ = locked
    before = csrf_from(c.get("/desk/login").text)
    after = sign_in(c)
    assert before != after


@pytest.mark.parametrize("action", ["approve", "hold", "send", "test"])
def test_every_desk_post_rejects_missing_or_wrong_csrf(locked: tuple[TestClient, RecordingPipeline], action: str) -> None:
    c, fake = locked
    sign_in(c)
    assert c.post(f"/desk/story/alpha/{action}", data={"address": "a@example.org", "confirm": "yes"}).status_code == 403
    assert c.post(f"/desk/story/alpha/{action}", data={"csrf": "wrong", "address": "a@example.org", "confirm": "yes"}).status_code == 403
    assert fake.calls == []


def test_logout_needs_csrf_and_ends_the_session(locked: tuple[TestClient, RecordingPipeline]) -> None:
    c, _ = locked
    token = sign_in(c)
    assert c.post("/desk/logout").status_code == 403
    assert c.post("/desk/logout", data={"csrf": token}, follow_redirects=False).status_code == 303
    assert c.get("/desk/", follow_redirects=False).status_code == 303


def test_approve_and_hold_call_the_pipeline(locked: tuple[TestClient, RecordingPipeline]) -> None:
    c, fake = locked
    token = sign_in(c)
    r = c.post("/desk/story/alpha/approve", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 303 and fake.calls == []  # approving asks to confirm the readers first
    assert "tick the box to confirm the number of readers" in c.get("/desk/story/alpha").text
    r = c.post("/desk/story/alpha/approve", data={"csrf": token, "confirm": "yes"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/desk/story/alpha"
    assert issue_state(fake.engine, "alpha") == "approved"
    assert "released to the next send, to 0 readers" in c.get("/desk/story/alpha").text
    c.post("/desk/story/alpha/hold", data={"csrf": token}, follow_redirects=False)
    assert fake.calls == [("approve", "alpha"), ("hold", "alpha")]
    assert issue_state(fake.engine, "alpha") == "held"


def test_state_errors_come_back_as_a_message(locked: tuple[TestClient, RecordingPipeline]) -> None:
    c, fake = locked
    token = sign_in(c)
    set_issue_state(fake.engine, "alpha", "sent")
    c.post("/desk/story/alpha/approve", data={"csrf": token, "confirm": "yes"}, follow_redirects=False)
    r = c.get("/desk/")
    assert "Not possible now: story alpha is sent" in r.text


def test_send_now_needs_the_confirm_box(locked: tuple[TestClient, RecordingPipeline]) -> None:
    c, fake = locked
    token = sign_in(c)
    c.post("/desk/story/alpha/send", data={"csrf": token}, follow_redirects=False)
    assert fake.calls == []
    assert "tick the box" in c.get("/desk/").text


def test_bearer_token_works_without_cookie_or_csrf(locked: tuple[TestClient, RecordingPipeline]) -> None:
    c, fake = locked
    assert c.get("/desk/", headers={"Authorization": f"Bearer {PASSWORD}"}).status_code == 200
    assert c.get("/desk/", headers={"Authorization": "Bearer nope"}, follow_redirects=False).status_code == 401  # counted by the throttle
    r = c.post("/desk/story/alpha/hold", headers={"Authorization": f"Bearer {PASSWORD}"}, follow_redirects=False)
    assert r.status_code == 303
    assert fake.calls == [("hold", "alpha")]


def test_bad_slugs_are_404(locked: tuple[TestClient, RecordingPipeline]) -> None:
    c, _ = locked
    sign_in(c)
    assert c.get("/desk/story/nope").status_code == 404
    assert c.get("/desk/story/..%2f..%2fetc").status_code == 404
    assert c.get("/desk/story/UPPER").status_code == 404
    assert c.get("/desk/events?kind=story&key=../x").status_code == 400


def test_desk_list_shows_states_and_lint_findings(locked: tuple[TestClient, RecordingPipeline], env: tuple[Config, sa.Engine]) -> None:
    c, _ = locked
    _, engine = env
    add_story(engine, "beta", state="sent")
    add_story(engine, "gamma", state=None, status="draft")
    broken = REFERENCE.read_bytes().replace(b"**Meta:**", b"**Meta:** takes: 999;", 1)
    add_story(engine, "delta", source=broken, state="error", error="delta.txt:3: error: something broke")
    sign_in(c)
    html = c.get("/desk/").text
    for text in ("awaiting approval", "sent", "draft", "error", "Title of delta", "something broke"):
        assert text in html
    assert re.search(r"delta.*?(\d+) error\(s\)", html, re.S)
    assert csrf_from(html)
    r = c.get("/desk/")
    assert "default-src 'none'" in r.headers["content-security-policy"]


# ------------------------------------------------------------------ subscribe / confirm / unsubscribe


def test_subscribe_form_and_validation(client: TestClient) -> None:
    form = client.get("/subscribe")
    assert form.status_code == 200
    m = re.search(r'name="form_token" value="([^"]+)"', form.text)
    assert m
    assert client.post("/subscribe", data={"email": "a@example.org", "cadence": "daily", "form_token": "forged"}).status_code == 400
    r = client.post("/subscribe", data={"email": "not an address<script>", "cadence": "daily", "form_token": m.group(1)})
    assert r.status_code == 400
    assert "<script>" not in r.text


@pytest.mark.parametrize("path", ["/unsubscribe?t=garbage", "/confirm?t=garbage", "/unsubscribe", "/confirm"])
def test_bad_tokens_on_get(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 400
    assert "<form" not in r.text


def test_unsubscribe_token_is_not_a_confirm_token(client: TestClient, env: tuple[Config, sa.Engine]) -> None:
    from publisher.mail.tokens import make_token, signing_key

    cfg, engine = env
    sub, _ = subscribers_store.add_subscriber(engine, "a@example.org", "daily", status="active", now=NOW)
    token = make_token(signing_key(cfg), "unsubscribe", sub.id, sub.email)
    assert client.get(f"/unsubscribe?t={token}").status_code == 200
    assert client.get(f"/confirm?t={token}").status_code == 400


@pytest.mark.parametrize(
    "raw",
    ["../state/publisher.db.atom", "/../state/publisher.db.atom", "/issues/../../state/publisher.db.atom", "/./feed.atom", "/.secret.atom", "/feed.atom\x00", "/..\\state\\publisher.db.atom", "/state.db"],
)
def test_resolver_refuses_raw_traversal(env: tuple[Config, sa.Engine], raw: str) -> None:
    # httpx normalises "..", so the resolver is also fed raw, un-normalised paths.
    cfg, _ = env
    assert web_public.PublicFiles(cfg.paths.public).resolve(raw) is None


def test_resolver_finds_known_files(env: tuple[Config, sa.Engine]) -> None:
    cfg, _ = env
    files = web_public.PublicFiles(cfg.paths.public)
    st = files.resolve("/tags/energy/feed.atom")
    assert st is not None and st.path.name == "feed.atom"
    assert files.read(st) == b"<feed/>"


def _outbox(cfg: Config) -> list[Any]:
    import mailbox

    from publisher.mail.transports import outbox_path

    box = mailbox.Maildir(str(outbox_path(cfg)), create=False)
    return [email.message_from_bytes(box.get_bytes(k), policy=email.policy.default) for k in sorted(box.keys())]


def test_subscribe_confirm_unsubscribe_round_trip(client: TestClient, env: tuple[Config, sa.Engine]) -> None:
    from publisher.mail.tokens import make_token, signing_key

    cfg, engine = env
    form = client.get("/subscribe").text
    token = re.search(r'name="form_token" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    r = client.post("/subscribe", data={"email": "Reader@Example.org", "cadence": "weekly", "form_token": token})
    assert r.status_code == 200 and "Check your inbox" in r.text
    assert client.app.state.ctx.signups.wait_idle()  # type: ignore[attr-defined]
    sub = subscribers_store.find_subscriber(engine, "reader@example.org")
    assert sub is not None and sub.status == "pending" and sub.cadence == "weekly"
    # The confirmation mail links to /confirm; GET only shows a button.
    [mail] = _outbox(cfg)
    body = mail.get_body(preferencelist=("plain",)).get_content()
    url = re.search(r"(http://\S+/confirm\?t=\S+)", body).group(1)  # type: ignore[union-attr]
    path = url.removeprefix("http://127.0.0.1:8000")
    page = client.get(path)
    assert page.status_code == 200 and "<form" in page.text
    assert subscribers_store.find_subscriber(engine, "reader@example.org").status == "pending"  # type: ignore[union-attr]
    t = re.search(r'name="t" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    assert client.post("/confirm", data={"t": t}).status_code == 200
    assert subscribers_store.find_subscriber(engine, "reader@example.org").status == "active"  # type: ignore[union-attr]
    # RFC 8058 one-click: no cookie, no CSRF, the token in the URL.
    unsub = make_token(signing_key(cfg), "unsubscribe", sub.id, sub.email)
    fresh = TestClient(client.app, base_url="http://127.0.0.1:8000")
    r = fresh.post(f"/unsubscribe?t={unsub}", content=b"List-Unsubscribe=One-Click", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and "Unsubscribed" in r.text
    assert subscribers_store.find_subscriber(engine, "reader@example.org").status == "unsubscribed"  # type: ignore[union-attr]
    # A replay is harmless and says the same.
    assert fresh.post(f"/unsubscribe?t={unsub}", content=b"List-Unsubscribe=One-Click", headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 200


@pytest.mark.parametrize("token", ["", "garbage", "eyJhIjoxfQ.forged.sig"])
def test_bad_tokens_on_post(client: TestClient, token: str) -> None:
    assert client.post(f"/unsubscribe?t={token}", content=b"List-Unsubscribe=One-Click", headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 400
    assert client.post("/confirm", data={"t": token}).status_code == 400


def test_tampered_unsubscribe_token_changes_nothing(client: TestClient, env: tuple[Config, sa.Engine]) -> None:
    from publisher.mail.tokens import make_token, signing_key

    cfg, engine = env
    subscribers_store.request_signup(engine, "x@example.org", "daily", now=NOW, resend_after=dt.timedelta(hours=1))
    sub = subscribers_store.find_subscriber(engine, "x@example.org")
    assert sub is not None
    other = make_token(b"another key entirely, 32 bytes long!", "unsubscribe", sub.id, sub.email)
    assert client.post(f"/unsubscribe?t={other}").status_code == 400
    good = make_token(signing_key(cfg), "unsubscribe", sub.id, sub.email)
    assert client.post(f"/unsubscribe?t={good[:-2]}").status_code == 400
    assert subscribers_store.find_subscriber(engine, "x@example.org").status == "pending"  # type: ignore[union-attr]


# ------------------------------------------------------------------ preview


def _normalise_unsubscribe(html: str) -> str:
    return re.sub(r"unsubscribe\?t=[^\"&\s<]+", "unsubscribe?t=TOKEN", html)


def test_preview_is_the_message_a_send_produces(client: TestClient, env: tuple[Config, sa.Engine]) -> None:
    cfg, engine = env
    add_story(engine, "alpha")
    page = client.get("/desk/story/alpha")
    assert page.status_code == 200
    frame = client.get("/desk/story/alpha/email")
    assert frame.status_code == 200
    assert "sandbox" not in frame.headers.get("content-security-policy", "") and "default-src 'none'" in frame.headers["content-security-policy"]
    # Send a test through the desk (Maildir outbox: smtp.host is empty) and
    # compare its HTML part with the preview frame: only the token differs.
    token = csrf_from(page.text)
    r = client.post("/desk/story/alpha/test", data={"csrf": token, "address": "editor@example.org"}, follow_redirects=False)
    assert r.status_code == 303
    [mail] = _outbox(cfg)
    sent_html = mail.get_body(preferencelist=("html",)).get_content()
    assert _normalise_unsubscribe(sent_html) == _normalise_unsubscribe(frame.text)
    assert str(mail["Subject"]).startswith("[TEST]")
    subject = str(mail["Subject"]).removeprefix("[TEST]").strip()
    assert f'id="subject">{subject}</span>' in page.text.replace("&#39;", "'")
    assert "Test sent to editor@example.org" in client.get("/desk/story/alpha").text


def test_preview_shows_text_part_inbox_line_and_size(client: TestClient, env: tuple[Config, sa.Engine]) -> None:
    _, engine = env
    add_story(engine, "alpha")
    html = client.get("/desk/story/alpha").text
    assert 'id="text-part"' in html and "SUMMARY" in html.upper()
    assert re.search(r'id="html-size">\d+\.\d KB</strong> of Gmail', html)
    assert "Gmail will clip" not in html
    for view in ("both", "desktop", "mobile", "dark"):
        page = client.get(f"/desk/story/alpha?view={view}").text
        assert ('class="w600' in page) == (view in ("both", "desktop", "dark"))
        assert ('class="w375' in page) == (view in ("both", "mobile", "dark"))
    assert 'src="/desk/story/alpha/email?scheme=dark"' in client.get("/desk/story/alpha?view=dark").text


def test_preview_warns_past_the_gmail_clip(client: TestClient, env: tuple[Config, sa.Engine], monkeypatch: pytest.MonkeyPatch) -> None:
    _, engine = env
    add_story(engine, "alpha")
    monkeypatch.setattr(web_preview, "GMAIL_CLIP_BYTES", 1000)
    assert "Gmail will clip this message" in client.get("/desk/story/alpha").text


def test_dark_frame_forces_the_dark_rules(client: TestClient, env: tuple[Config, sa.Engine]) -> None:
    _, engine = env
    add_story(engine, "alpha")
    light = client.get("/desk/story/alpha/email").text
    dark = client.get("/desk/story/alpha/email?scheme=dark").text
    assert re.search(r"prefers-color-scheme:\s*dark", light)
    assert not re.search(r"prefers-color-scheme:\s*dark", dark)
    assert '<meta name="color-scheme" content="dark">' in dark


def test_force_dark_rewrites_media_queries() -> None:
    html = "<html><head><style>@media (prefers-color-scheme: dark){a{color:red}} @media (prefers-color-scheme:light){a{color:blue}}</style></head></html>"
    out = web_preview.force_dark(html)
    assert "@media (min-width: 0px){a{color:red}}" in out
    assert "@media (max-width: 0px){a{color:blue}}" in out
    assert out.index('content="dark"') < out.index("<style>@media")


def test_broken_story_source_shows_an_error_not_a_crash(client: TestClient, env: tuple[Config, sa.Engine]) -> None:
    _, engine = env
    add_story(engine, "broken", source=b"\xff\xfe not a brief")
    r = client.get("/desk/story/broken")
    assert r.status_code == 200
    assert "Cannot render" in r.text
    assert client.get("/desk/story/broken/email").status_code == 404  # a message, never a 500


def test_digest_preview_with_no_stories_explains(client: TestClient) -> None:
    r = client.get("/desk/digest")
    assert r.status_code == 200
    assert "No stories since the last daily digest" in r.text and 'class="error"' not in r.text


def test_serve_command_refuses_a_public_bind_without_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from publisher.cli import main

    monkeypatch.delenv("PUBLISHER_DESK_PASSWORD", raising=False)
    monkeypatch.setenv("PUBLISHER_SIGNING_KEY", "k" * 64)
    (tmp_path / "config.toml").write_text('[paths]\nstate = "state"\npublic = "public"\n')
    result = CliRunner().invoke(main, ["serve", "--config", str(tmp_path / "config.toml"), "--host", "0.0.0.0", "--port", "8999"])
    assert result.exit_code != 0
    assert "refusing to serve the desk on non-loopback address '0.0.0.0'" in result.output


def test_send_now_approves_then_sends_through_delivery(env: tuple[Config, sa.Engine], monkeypatch: pytest.MonkeyPatch) -> None:

    monkeypatch.setenv("PUBLISHER_DESK_PASSWORD", PASSWORD)
    cfg, engine = env
    add_story(engine, "alpha")
    subscribers_store.add_subscriber(engine, "instant@example.org", "instant", status="active", now=NOW)
    subscribers_store.add_subscriber(engine, "daily@example.org", "daily", status="active", now=NOW)

    fake = RecordingPipeline(cfg, engine)
    with TestClient(web_app.create_app(cfg, engine, fake, no_auth=True), base_url="http://127.0.0.1:8000") as c:
        token = sign_in(c)
        r = c.post("/desk/story/alpha/send", data={"csrf": token, "confirm": "yes"}, follow_redirects=False)
        assert r.status_code == 303
    assert fake.calls == [("approve", "alpha")]
    with engine.connect() as conn:
        assert conn.execute(sa.select(schema.issues.c.state).where(schema.issues.c.key == "alpha")).scalar_one() == "sent"
    assert [str(m["To"]) for m in _outbox(cfg)] == ["instant@example.org"]


def test_live_refresh_script_is_served(client: TestClient) -> None:
    r = client.get("/_web/live.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert "EventSource" in r.text


def test_feed_entry_frame(client: TestClient, env: tuple[Config, sa.Engine]) -> None:
    _, engine = env
    add_story(engine, "alpha")
    r = client.get("/desk/story/alpha/feed")
    assert r.status_code == 200
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert "Anthropic" in r.text and "<script" not in r.text.lower()


def test_a_test_copy_s_unsubscribe_link_says_it_was_a_test(client: TestClient, env: tuple[Config, sa.Engine]) -> None:
    from publisher.mail.tokens import make_token, signing_key

    cfg, _ = env
    token = make_token(signing_key(cfg), "unsubscribe", 0, "editor@example.org")  # what send_test uses for a non-subscriber
    page = client.get(f"/unsubscribe?t={token}")
    assert page.status_code == 200 and "[TEST] copy" in page.text and "Unsubscribed" not in page.text
    done = client.post("/unsubscribe", data={"t": token, "List-Unsubscribe": "One-Click"})
    assert done.status_code == 200 and "there is no subscription to end" in done.text


def test_a_reader_changes_cadence_from_their_emailed_link(client: TestClient, env: tuple[Config, sa.Engine]) -> None:
    from publisher.mail.tokens import make_token, signing_key

    cfg, engine = env
    sub, _ = subscribers_store.add_subscriber(engine, "reader@example.org", "instant", status="active", now=NOW)
    token = make_token(signing_key(cfg), "unsubscribe", sub.id, sub.email)
    page = client.get(f"/unsubscribe?t={token}")
    assert page.status_code == 200 and 'id="cadence-form"' in page.text and "gets each story as it is published" in page.text
    done = client.post("/cadence", data={"t": token, "cadence": "weekly"})
    assert done.status_code == 200 and "the weekly digest" in done.text
    assert subscribers_store.find_subscriber(engine, "reader@example.org").cadence == "weekly"  # type: ignore[union-attr]
    assert client.post("/cadence", data={"t": token + "x", "cadence": "daily"}).status_code == 400
    assert client.post("/cadence", data={"t": token, "cadence": "hourly"}).status_code == 400
    assert subscribers_store.find_subscriber(engine, "reader@example.org").cadence == "weekly"  # type: ignore[union-attr]
