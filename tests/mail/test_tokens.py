"""Signed unsubscribe/confirm tokens and the functions the web routes call."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sqlalchemy.engine import Engine

from publisher.mail import tokens
from publisher.core.clock import FixedClock
from publisher.core.config import Config
from publisher.core.errors import TokenError
from publisher.delivery import subscriptions
from publisher.store import subscribers as subscribers_store

from tests.support.smtp import T0, make_cfg, make_store

KEY = b"0123456789abcdef0123456789abcdef"


def read_token(key: bytes, purpose: str, token: str, email: str = "a@example.net") -> int:
    return tokens.verify_token(key, purpose, token, email).subscriber_id


def test_round_trip_and_purpose_separation() -> None:
    token = tokens.make_token(KEY, "unsubscribe", 42, "reader@example.net")
    assert read_token(KEY, "unsubscribe", token, "reader@example.net") == 42
    with pytest.raises(TokenError):  # an unsubscribe token never confirms anyone
        read_token(KEY, "confirm", token, "reader@example.net")
    with pytest.raises(TokenError):
        read_token(b"another key, also 32 bytes long!", "unsubscribe", token, "reader@example.net")
    with pytest.raises(TokenError):  # the address is inside the MAC
        read_token(KEY, "unsubscribe", token, "someone.else@example.net")
    assert all(c.isalnum() or c in "-_." for c in token)  # safe in a URL query as-is


def test_tokens_are_opaque() -> None:
    import base64

    email = "victim@example.com"
    token = tokens.make_token(KEY, "confirm", 42, email, bind="7")
    assert token.startswith("42-7.")
    for form in (email, base64.urlsafe_b64encode(email.encode()).decode().rstrip("="), base64.b64encode(email.encode()).decode().rstrip("=")):
        assert form not in token
    assert "victim" not in token.lower()


def test_old_signed_unsubscribe_links_still_work_old_confirm_links_do_not() -> None:
    import base64
    import hashlib

    from itsdangerous import TimestampSigner

    address = base64.urlsafe_b64encode(b"reader@example.net").rstrip(b"=").decode()
    def old(purpose: str) -> str:
        signer = TimestampSigner(KEY, salt=f"publisher.{purpose}", digest_method=hashlib.sha256)
        return signer.sign(f"42~{address}").decode()
    assert read_token(KEY, "unsubscribe", old("unsubscribe"), "reader@example.net") == 42
    with pytest.raises(TokenError):
        read_token(KEY, "unsubscribe", old("unsubscribe"), "other@example.net")
    with pytest.raises(TokenError):
        read_token(KEY, "confirm", old("confirm"), "reader@example.net")


@given(st.integers(min_value=0, max_value=10**12), st.emails())
@settings(max_examples=60, deadline=None)
def test_any_subscriber_round_trips(sid: int, email: str) -> None:
    assert read_token(KEY, "confirm", tokens.make_token(KEY, "confirm", sid, email), email) == sid


def _mutations(token: str) -> list[str]:
    out = [token[:-1], token[: len(token) // 2], token + "x", "", token.upper(), token.replace(".", "~", 1)]
    # Every third character, but not the last: its low bits are base64
    # padding, so some edits there decode to the same signature.
    for i in range(0, len(token) - 1, 3):
        c = token[i]
        out.append(token[:i] + ("A" if c != "A" else "B") + token[i + 1 :])
    return [m for m in out if m != token]


def test_truncated_tampered_or_forged_tokens_are_refused() -> None:
    token = tokens.make_token(KEY, "unsubscribe", 7, "a@example.net")
    for bad in _mutations(token):
        with pytest.raises(TokenError):
            read_token(KEY, "unsubscribe", bad)
    # a well-formed payload with someone else's id, signature copied over
    other = tokens.make_token(KEY, "unsubscribe", 8, "a@example.net")
    spliced = other.split(".", 1)[0] + "." + token.split(".", 1)[1]
    with pytest.raises(TokenError):
        read_token(KEY, "unsubscribe", spliced)
    for junk in ("\x00", "ä" * 10, "a" * 5000, "1~YQ.abc.def"):
        with pytest.raises(TokenError):
            read_token(KEY, "unsubscribe", junk)


def test_generated_key_is_private_and_stable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PUBLISHER_SIGNING_KEY", raising=False)
    cfg = make_cfg(tmp_path)
    key = tokens.signing_key(cfg)
    path = tmp_path / "state" / "signing.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) >= 32
    assert tokens.signing_key(cfg) == key  # generated once
    assert [p.name for p in path.parent.iterdir()] == ["signing.key"]  # no temp files left
    monkeypatch.setenv("PUBLISHER_SIGNING_KEY", key.decode())
    assert tokens.signing_key(cfg) == key  # the file's text works verbatim as the env value
    monkeypatch.setenv("PUBLISHER_SIGNING_KEY", "from-the-environment-0123456789abcdef")
    assert tokens.signing_key(cfg) == b"from-the-environment-0123456789abcdef"


# ------------------------------------------------ subscribe / confirm / unsubscribe


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Config, Engine]:
    monkeypatch.setenv("PUBLISHER_SIGNING_KEY", KEY.decode())
    cfg = make_cfg(tmp_path)  # Maildir outbox: the confirmation lands in state/outbox
    return cfg, make_store(cfg)


def _status(engine: Engine, email: str) -> str:
    sub = subscribers_store.find_subscriber(engine, email)
    assert sub is not None
    return sub.status


def _status_id(engine: Engine, sid: int) -> str:
    sub = subscribers_store.get_subscriber(engine, sid)
    assert sub is not None
    return sub.status


def _outbox(cfg: Config) -> list[bytes]:
    new = cfg.paths.state / "outbox" / "new"
    return [p.read_bytes() for p in sorted(new.iterdir())] if new.exists() else []


def _confirm_token(message: bytes) -> str:
    import email
    import email.policy
    import re

    msg = email.message_from_bytes(message, policy=email.policy.default)
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    m = re.search(r"https://news\.example\.org/confirm\?t=([A-Za-z0-9_.~\-]+)", text)
    assert m, text
    assert f'href="{m.group(0)}"' in html
    return m.group(1)


def test_double_opt_in(env: tuple[Config, Engine]) -> None:
    cfg, engine = env
    clock = FixedClock(T0)
    subscriptions.subscribe(cfg, engine, "  New.Reader@Example.ORG ", "daily", clock=clock)
    sub = subscribers_store.find_subscriber(engine, "new.reader@example.org")
    assert sub is not None and sub.status == "pending" and sub.cadence == "daily"
    (mail,) = _outbox(cfg)
    assert b"To: new.reader@example.org" in mail and b"Subject: Confirm your subscription" in mail
    token = _confirm_token(mail)
    # the link itself confirms nothing: that takes the web page's POST, which calls confirm()
    assert _status(engine, sub.email) == "pending"
    with pytest.raises(TokenError):
        subscriptions.confirm(cfg, engine, token[:-2], clock=clock)
    assert subscriptions.confirm(cfg, engine, token, clock=clock) is True
    assert subscriptions.confirm(cfg, engine, token, clock=clock) is False
    assert _status(engine, sub.email) == "active"
    # asking again while active sends nothing (the form reveals nothing either)
    subscriptions.subscribe(cfg, engine, "new.reader@example.org", "daily", clock=clock)
    assert len(_outbox(cfg)) == 1


def test_confirm_link_expires(env: tuple[Config, Engine]) -> None:
    cfg, engine = env
    clock = FixedClock(T0)
    subscriptions.subscribe(cfg, engine, "late@example.org", "instant", clock=clock)
    token = _confirm_token(_outbox(cfg)[0])
    late = FixedClock(T0 + dt.timedelta(seconds=subscriptions.CONFIRM_MAX_AGE + 60))
    with pytest.raises(TokenError):
        subscriptions.confirm(cfg, engine, token, clock=late)
    assert _status(engine, "late@example.org") == "pending"


def test_unsubscribe_forged_tokens_change_nothing_and_replay_is_harmless(env: tuple[Config, Engine]) -> None:
    cfg, engine = env
    sub, _ = subscribers_store.add_subscriber(engine, "a@example.net", "instant", status="active", now=T0)
    other, _ = subscribers_store.add_subscriber(engine, "b@example.net", "instant", status="active", now=T0)
    token = tokens.make_token(KEY, "unsubscribe", sub.id, sub.email)
    forged = [
        *_mutations(token),
        tokens.make_token(b"attacker key attacker key attack", "unsubscribe", other.id, other.email),
        tokens.make_token(KEY, "confirm", other.id, other.email),  # wrong purpose
    ]
    for bad in forged:
        with pytest.raises(TokenError):
            subscriptions.unsubscribe(cfg, engine, bad)
    assert subscribers_store.count_subscribers(engine)["active"] == 2
    # a valid token for an id whose address changed does nothing either
    stale = tokens.make_token(KEY, "unsubscribe", other.id, "old@example.net")
    with pytest.raises(TokenError):
        subscriptions.unsubscribe(cfg, engine, stale)
    assert subscriptions.unsubscribe(cfg, engine, token) is True
    assert subscriptions.unsubscribe(cfg, engine, token) is False  # a replay is harmless
    assert _status_id(engine, sub.id) == "unsubscribed"
    assert _status_id(engine, other.id) == "active"
    # and a confirm link replayed after unsubscribing does not resubscribe
    with pytest.raises(TokenError):  # names no sign-up
        subscriptions.confirm(cfg, engine, tokens.make_token(KEY, "confirm", sub.id, sub.email))
    with pytest.raises(TokenError):  # names a sign-up that is not theirs
        subscriptions.confirm(cfg, engine, tokens.make_token(KEY, "confirm", sub.id, sub.email, bind="1"))
    assert _status_id(engine, sub.id) == "unsubscribed"


def test_signing_key_env_name_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_cfg(tmp_path)
    cfg = dataclasses.replace(cfg, security=dataclasses.replace(cfg.security, signing_key_env="MY_KEY"))
    monkeypatch.setenv("MY_KEY", "k" * 40)
    assert tokens.signing_key(cfg) == b"k" * 40
    assert not (tmp_path / "state" / "signing.key").exists()
    assert os.environ["MY_KEY"]


def test_link_maker_makes_the_same_tokens_as_make_token() -> None:
    key = b"k" * 40
    times = iter([1_790_000_000.2, 1_790_000_000.9, 1_790_000_001.0, 1_790_003_601.5])
    now = [0.0]

    def clock() -> float:
        now[0] = next(times)
        return now[0]

    links = tokens.LinkMaker(key, "unsubscribe", "https://news.example.org/unsubscribe?t=", clock=clock)
    for sid, address in [(1, "a@example.net"), (42, "müller@bücher.example"), (42, "a@example.net"), (10**12, "x@y.z")]:
        url = links.url(sid, address)
        token = url.removeprefix("https://news.example.org/unsubscribe?t=")
        assert token == tokens.make_token(key, "unsubscribe", sid, address, now=now[0])
        assert tokens.verify_token(key, "unsubscribe", token, address).subscriber_id == sid
