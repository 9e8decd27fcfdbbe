"""Delivery against a real SMTP server (aiosmtpd) started by each test."""

from __future__ import annotations

import email
import email.policy
import mailbox
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.mail import tokens
from publisher.delivery.sender import RateLimiter, SendAborted
from publisher.mail.wire import WireMessage, wire_data
from publisher.core.errors import DeliveryError, StateError
from publisher.store.schema import deliveries, subscribers
from publisher.delivery import send as delivery
from publisher.delivery import subscriptions
from publisher.mail import transports
from publisher.store import deliveries as ledger
from publisher.store import issues as issues_store
from publisher.store import subscribers as subscribers_store

from tests.support.smtp import (
    T0,
    Sink,
    add_issue,
    add_story_issue,
    add_subscribers,
    free_port,
    issue_state,
    make_cfg,
    make_store,
    smtp_server,
)


def _token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["t"][0]


def _ledger_rows(engine: sa.Engine, issue_id: int) -> dict[str, tuple[str, int, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(subscribers.c.email, deliveries.c.state, deliveries.c.attempts, deliveries.c.last_error)
            .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
            .where(deliveries.c.issue_id == issue_id)
        ).all()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def test_message_as_received_and_one_click_unsubscribe(tmp_path: Path) -> None:
    sink = Sink()
    with smtp_server(sink) as port:
        cfg = make_cfg(tmp_path, port=port)
        engine = make_store(cfg)
        emails = add_subscribers(engine, 3)
        add_subscribers(engine, 2, cadence="daily", start=100)  # not the audience of a story
        issue_id = add_story_issue(engine, cfg)
        report = delivery.send_issue(cfg, engine, issue_id)
    assert report.sent == 3 and report.failed == 0 and report.queued == 0
    assert issue_state(engine, issue_id) == "sent"
    assert sorted(sink.recipients()) == emails
    key = tokens.signing_key(cfg)
    ids = set()
    for got in sink.messages:
        msg = email.message_from_bytes(got.content, policy=email.policy.default)
        (rcpt,) = got.rcpt_tos
        assert got.mail_from == "briefs@news.example.org"
        assert msg["To"] == rcpt
        assert "briefs@news.example.org" in msg["From"]
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg["List-Id"].endswith("<briefs.example.org>")
        m = re.fullmatch(r"<(https://news\.example\.org/unsubscribe\?t=[A-Za-z0-9_.~\-]+)>", msg["List-Unsubscribe"])
        assert m, msg["List-Unsubscribe"]
        url = m.group(1)
        claim = tokens.verify_token(key, "unsubscribe", _token_of(url), rcpt)
        stored = subscribers_store.get_subscriber(engine, claim.subscriber_id)
        assert stored is not None and stored.email == rcpt
        text_part, html_part = msg.get_body(("plain",)), msg.get_body(("html",))
        assert text_part is not None and html_part is not None
        text, html = text_part.get_content(), html_part.get_content()
        assert url in text
        assert url.replace("&", "&amp;") in html
        ids.add(msg["Message-ID"])
        assert not msg.defects
    assert len(ids) == 3  # one Message-ID per delivery

    # RFC 8058: the token from the header unsubscribes at once; a replay is harmless.
    first = email.message_from_bytes(sink.messages[0].content, policy=email.policy.default)
    token = _token_of(first["List-Unsubscribe"].strip("<>"))
    assert subscriptions.unsubscribe(cfg, engine, token) is True
    assert subscriptions.unsubscribe(cfg, engine, token) is False
    sub = subscribers_store.find_subscriber(engine, first["To"])
    assert sub is not None and sub.status == "unsubscribed"
    assert subscribers_store.count_subscribers(engine)["active"] == 4


def test_rate_limit_spaces_messages_on_the_wire(tmp_path: Path) -> None:
    sink = Sink(keep_content=False)
    with smtp_server(sink) as port:
        cfg = make_cfg(tmp_path, port=port, connections=3, rate_per_second=20.0)
        engine = make_store(cfg)
        add_subscribers(engine, 21)
        issue_id = add_issue(engine)
        delivery.send_issue(cfg, engine, issue_id)
    times = sorted(m.at for m in sink.messages)
    assert len(times) == 21
    # 21 messages at 20/s need at least 20 intervals of 50 ms; a lower bound
    # only, which a slow machine cannot break.
    assert times[-1] - times[0] >= 0.95


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_per_second_and_per_hour() -> None:
    clock = FakeTime()
    per_second = RateLimiter(4.0, 0, monotonic=clock)
    assert [round(per_second.reserve(), 3) for _ in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    clock.now += 10  # idle time is not banked into a burst
    assert per_second.reserve() == 0.0
    assert per_second.delay() == pytest.approx(0.25)

    # 3 per hour, two already sent 30 minutes ago (seeded from the ledger)
    clock.now = 10_000.0
    hourly = RateLimiter(0.0, 3, history=[clock.now - 1800, clock.now - 1700], monotonic=clock)
    assert hourly.reserve() == 0.0
    assert hourly.delay() == pytest.approx(1800.0)
    assert hourly.reserve() == pytest.approx(1800.0)
    assert hourly.reserve() == pytest.approx(1900.0)


@pytest.mark.parametrize("pipelining", [False, True])
def test_4xx_is_retried_with_backoff_then_delivered(tmp_path: Path, pipelining: bool) -> None:
    sink = Sink(pipelining=pipelining)
    with smtp_server(sink) as port:
        cfg = make_cfg(tmp_path, port=port, max_attempts=5)
        engine = make_store(cfg)
        emails = add_subscribers(engine, 4)
        sink.temp_fail[emails[1]] = 2
        issue_id = add_issue(engine)
        report = delivery.send_issue(cfg, engine, issue_id)
    assert sink.recipients() == {e: 1 for e in emails}
    assert report.retrying == 2 and report.sent == 4
    rows = _ledger_rows(engine, issue_id)
    assert rows[emails[1]] == ("sent", 3, None)
    assert rows[emails[0]] == ("sent", 1, None)
    assert issue_state(engine, issue_id) == "sent"


def test_4xx_until_max_attempts_fails_without_bouncing(tmp_path: Path) -> None:
    sink = Sink()
    with smtp_server(sink) as port:
        cfg = make_cfg(tmp_path, port=port, max_attempts=3)
        engine = make_store(cfg)
        emails = add_subscribers(engine, 2)
        sink.temp_fail[emails[0]] = 99
        issue_id = add_issue(engine)
        report = delivery.send_issue(cfg, engine, issue_id)
    assert report.failed == 1 and report.sent == 1
    state, attempts, error = _ledger_rows(engine, issue_id)[emails[0]]
    assert (state, attempts) == ("failed", 3) and error and "451" in error
    sub = subscribers_store.find_subscriber(engine, emails[0])
    assert sub is not None and sub.status == "active"


@pytest.mark.parametrize(("bounce_after", "status", "pipelining"), [(1, "bounced", False), (2, "active", False), (1, "bounced", True)])
def test_5xx_fails_at_once_and_bounces(tmp_path: Path, bounce_after: int, status: str, pipelining: bool) -> None:
    sink = Sink(pipelining=pipelining)
    with smtp_server(sink) as port:
        cfg = make_cfg(tmp_path, port=port, bounce_after=bounce_after)
        engine = make_store(cfg)
        emails = add_subscribers(engine, 3)
        sink.permanent.add(emails[2])
        issue_id = add_issue(engine)
        report = delivery.send_issue(cfg, engine, issue_id)
    assert sink.recipients() == {emails[0]: 1, emails[1]: 1}
    state, attempts, error = _ledger_rows(engine, issue_id)[emails[2]]
    assert (state, attempts) == ("failed", 1) and error and "550" in error
    sub = subscribers_store.find_subscriber(engine, emails[2])
    assert sub is not None and sub.status == status and sub.bounces == 1
    assert report.bounced == (1 if status == "bounced" else 0)
    assert issue_state(engine, issue_id) == "sent"  # a failed row does not hold the issue open


@pytest.mark.parametrize("pipelining", [False, True])
def test_server_dropping_connections_mid_batch_loses_no_one(tmp_path: Path, pipelining: bool) -> None:
    # Drops far apart: a row that ends "unknown" twice in a row is presumed
    # delivered (tests/delivery/test_stages.py), which these drops are not.
    sink = Sink(drop_on={5, 30}, pipelining=pipelining)
    with smtp_server(sink) as port:
        cfg = make_cfg(tmp_path, port=port, connections=2, batch_size=10)
        engine = make_store(cfg)
        emails = add_subscribers(engine, 40)
        issue_id = add_issue(engine)
        report = delivery.send_issue(cfg, engine, issue_id)
    # Each drop lost the message before the server kept it, so the one resend
    # of an "unknown" outcome makes it exactly once.
    assert sink.data_count == 42  # the two drops really happened
    assert report.unknown == 2
    assert sink.recipients() == {e: 1 for e in emails}
    assert report.sent == 40 and report.failed == 0
    assert {v[0] for v in _ledger_rows(engine, issue_id).values()} == {"sent"}


def test_smtp_outage_stops_the_send_and_a_rerun_resumes(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here yet
    cfg = make_cfg(tmp_path, port=port)
    engine = make_store(cfg)
    emails = add_subscribers(engine, 12)
    issue_id = add_issue(engine)
    with pytest.raises(SendAborted) as info:
        delivery.send_issue(cfg, engine, issue_id)
    assert info.value.report.queued == 12
    assert issue_state(engine, issue_id) == "sending"
    # an outage is nobody's fault: no attempt counted, nothing failed
    assert {v for v in _ledger_rows(engine, issue_id).values()} == {("queued", 0, None)}

    sink = Sink()
    from aiosmtpd.controller import Controller

    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        report = delivery.send_issue(cfg, engine, issue_id)
    finally:
        controller.stop()
    assert sink.recipients() == {e: 1 for e in emails}
    assert report.sent == 12 and issue_state(engine, issue_id) == "sent"


def test_subscriber_who_leaves_mid_send_is_skipped(tmp_path: Path) -> None:
    sink = Sink()
    with smtp_server(sink) as port:
        cfg = make_cfg(tmp_path, port=port)
        engine = make_store(cfg)
        emails = add_subscribers(engine, 5)
        issue_id = add_issue(engine)
        issues_store.start_issue(engine, issue_id, now=T0)
        subscribers_store.remove_subscriber(engine, emails[3], forget=False, now=T0)
        delivery.send_issue(cfg, engine, issue_id)
    assert set(sink.recipients()) == set(emails) - {emails[3]}
    assert _ledger_rows(engine, issue_id)[emails[3]][0] == "skipped"
    assert issue_state(engine, issue_id) == "sent"


def test_unapproved_issue_cannot_be_sent(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    engine = make_store(cfg)
    add_subscribers(engine, 2)
    issue_id = add_issue(engine, state="awaiting_approval")
    with pytest.raises(StateError):
        delivery.send_issue(cfg, engine, issue_id)
    assert ledger.progress(engine, issue_id).total == 0


def test_maildir_outbox_is_the_default(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)  # no smtp.host
    engine = make_store(cfg)
    emails = add_subscribers(engine, 3)
    issue_id = add_issue(engine)
    report = delivery.drain(cfg, engine)
    assert report.sent == 3 and issue_state(engine, issue_id) == "sent"
    box = mailbox.Maildir(str(tmp_path / "state" / "outbox"), create=False)
    got = sorted(m["To"] for m in box)
    assert got == emails
    for m in box:
        assert m["Delivered-To"] == m["To"]
        assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # a second drain finds nothing to do
    again = delivery.drain(cfg, engine)
    assert again.sent == 0 and len(list(box)) == 3


def test_send_test_marks_subject_and_writes_no_ledger_rows(tmp_path: Path) -> None:
    sink = Sink()
    with smtp_server(sink) as port:
        cfg = make_cfg(tmp_path, port=port)
        engine = make_store(cfg)
        add_subscribers(engine, 2)
        issue_id = add_issue(engine, state="awaiting_approval")
        row = issues_store.get_issue(engine, issue_id)
        delivery.send_test(cfg, engine, delivery.rendered_from_row(row), "Editor@Example.COM")
    assert sink.recipients() == {"editor@example.com": 1}
    msg = email.message_from_bytes(sink.messages[0].content, policy=email.policy.default)
    assert msg["Subject"].startswith("[TEST] ")
    assert ledger.progress(engine, issue_id).total == 0
    assert issue_state(engine, issue_id) == "awaiting_approval"


def test_wire_data_stuffs_dots_and_normalises_line_ends() -> None:
    assert wire_data(b"a\r\n.b\r\n") == b"a\r\n..b\r\n.\r\n"
    assert wire_data(b".x\nY") == b"..x\r\nY\r\n.\r\n"
    clean = b"Subject: s\r\n\r\nbody\r\n"
    assert wire_data(clean) == clean + b".\r\n"


def test_wire_template_equals_the_slow_path(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    engine = make_store(cfg)
    issue_id = add_issue(engine)
    template = delivery.build_template(issues_store.get_issue(engine, issue_id), cfg, sent_at=T0)
    wire = WireMessage(template)
    assert wire.fast  # the real newsletter template takes the fast path
    cases = [
        ("a@b.example", "https://news.example.org/unsubscribe?t=1~YQ.x.y", "<1.1.ab@news.example.org>"),
        ("reader000001@example.net", "https://news.example.org/unsubscribe?t=" + "z" * 120, "<9.99999.f00@x.org>"),
        ("x@y.org", "https://news.example.org/u?t=1&b=2", "<2.2.c@x.org>"),  # '&' is escaped in the HTML part
    ]
    for to, url, mid in cases:
        expected = wire_data(template.personalize(to=to, unsubscribe_url=url, message_id=mid))
        assert wire.personalize(to=to, unsubscribe_url=url, message_id=mid) == expected
    with pytest.raises(DeliveryError):  # the template's own validation still runs
        wire.personalize(to="a@b.example\r\nBcc: x@y.z", unsubscribe_url=cases[0][1], message_id=cases[0][2])


def test_transport_pipelines_when_the_server_offers_it(tmp_path: Path) -> None:
    sink = Sink(pipelining=True)
    with smtp_server(sink) as port:
        cfg = make_cfg(tmp_path, port=port)
        transport = transports.SmtpTransport(cfg.smtp, None)
        transport.send("briefs@news.example.org", "a@example.net", b"Subject: hi\r\n\r\n.dot line\r\n")
        assert transport._conn is not None and transport._conn.has_extn("pipelining")
        sink.permanent.add("b@example.net")
        with pytest.raises(DeliveryError) as info:
            transport.send("briefs@news.example.org", "b@example.net", b"Subject: hi\r\n\r\nx\r\n")
        assert info.value.permanent and info.value.code == 550
        # the connection is still in a clean state for the next message
        transport.send("briefs@news.example.org", "c@example.net", b"Subject: hi\r\n\r\ny\r\n")
        transport.close()
    assert [m.rcpt_tos for m in sink.messages] == [["a@example.net"], ["c@example.net"]]
    assert sink.messages[0].content.endswith(b"\r\n.dot line\r\n")  # the server undid the stuffing


def test_drain_sends_digests_to_their_cadence(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)  # Maildir outbox
    engine = make_store(cfg)
    add_subscribers(engine, 2, cadence="instant")
    daily = add_subscribers(engine, 2, cadence="daily", start=10)
    weekly = add_subscribers(engine, 3, cadence="weekly", start=20)
    day = add_issue(engine, kind="digest", key="2026-11-28")
    week = add_issue(engine, kind="digest", key="2026-W48", cadence="weekly")
    held = add_issue(engine, kind="story", key="held-story", state="held")
    report = delivery.drain(cfg, engine)
    assert report.sent == 5 and sorted(report.issues) == ["digest:2026-11-28 sent", "digest:2026-W48 sent"]
    assert {issue_state(engine, i) for i in (day, week)} == {"sent"} and issue_state(engine, held) == "held"
    box = mailbox.Maildir(str(tmp_path / "state" / "outbox"), create=False)
    got = sorted((m["X-Publisher-Issue"], m["To"]) for m in box)
    assert got == sorted([("digest/2026-11-28", e) for e in daily] + [("digest/2026-W48", e) for e in weekly])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.lists(st.sampled_from([b".", b"\r", b"\n", b"\r\n", b"a", b"\r\n.\r\n"]), max_size=40).map(b"".join))
def test_wire_data_can_never_end_the_message_early(message: bytes) -> None:
    wire = wire_data(message)
    assert wire.endswith(b"\r\n.\r\n")
    body = wire[: -len(b".\r\n")]
    # Only CRLF line ends (no bare CR or LF for a lenient server to split on) ...
    assert body.count(b"\r") == body.count(b"\n") == body.count(b"\r\n")
    # ... and no line that is a lone dot before the terminator (SMTP smuggling).
    lines = body.split(b"\r\n")[:-1]
    assert b"." not in lines
    # Undoing the stuffing gives back the message with normalised line ends.
    unstuffed = b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines) + b"\r\n"
    expected = message.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    assert unstuffed == expected


def test_message_ids_are_derived_from_the_ledger_row(tmp_path: Path) -> None:
    # A resend after a crash (or after an upgrade mid-send) carries the same Message-ID.
    import hashlib

    from publisher.delivery.sender import Sender

    cfg = make_cfg(tmp_path)
    sender = Sender(cfg, make_store(cfg))
    for issue_id, delivery_id in [(7, 42), (7, 43), (123, 1)]:
        digest = hashlib.sha256(f"news.example.org:{issue_id}:{delivery_id}".encode()).hexdigest()[:12]
        assert sender.message_id(issue_id, delivery_id) == f"<{issue_id}.{delivery_id}.{digest}@news.example.org>"
    assert sender.message_id(7, 42) == sender.message_id(7, 42) != sender.message_id(42, 7)
