"""SMTP answers classified by stage, against an aiosmtpd server scripted per stage."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest
import sqlalchemy as sa

from publisher.delivery import send as delivery
from publisher.delivery.sender import SendAborted
from publisher.store import bounces as bounces_store
from publisher.store import issues as issues_store
from publisher.store import subscribers as subscribers_store
from publisher.store.schema import deliveries, issues, subscribers

from tests.support.smtp import T0, Sink, add_issue, add_subscribers, issue_state, make_cfg, make_store, smtp_server


def _statuses(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {r.email: r.status for r in conn.execute(sa.select(subscribers.c.email, subscribers.c.status))}


def _rows(engine: sa.Engine, issue_id: int) -> dict[str, tuple[str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(subscribers.c.email, deliveries.c.state, deliveries.c.attempts)
            .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
            .where(deliveries.c.issue_id == issue_id)
        ).all()
    return {r[0]: (r[1], r[2]) for r in rows}


def _issue_error(engine: sa.Engine, issue_id: int) -> str | None:
    with engine.connect() as conn:
        return conn.execute(sa.select(issues.c.error).where(issues.c.id == issue_id)).scalar_one()  # type: ignore[no-any-return]


@pytest.mark.parametrize("pipelining", [False, True])
def test_550_at_mail_from_bounces_nobody_then_a_retry_sends_one_copy_each(tmp_path: Path, pipelining: bool) -> None:
    sink = Sink(pipelining=pipelining, mail_from_replies=["550 5.7.1 sender address rejected"] * 30)
    with smtp_server(sink) as port:
        cfg = make_cfg(tmp_path, port=port, connections=1)
        engine = make_store(cfg)
        emails = add_subscribers(engine, 30)
        issue_id = add_issue(engine)
        with pytest.raises(SendAborted) as info:
            delivery.send_issue(cfg, engine, issue_id)
        assert info.value.refused and "550" in str(info.value) and "nobody was marked bounced" in str(info.value)
        assert set(_statuses(engine).values()) == {"active"}
        assert {(state, attempts) for state, attempts in _rows(engine, issue_id).values()} == {("queued", 0)}
        error = _issue_error(engine, issue_id)
        assert error and "MAIL FROM refused: 550" in error
        assert issue_state(engine, issue_id) == "sending"
        assert sink.messages == []
        sink.mail_from_replies.clear()  # the relay is fixed
        report = delivery.send_issue(cfg, engine, issue_id)
    assert report.sent == 30 and report.failed == 0
    assert sink.recipients() == {e: 1 for e in emails}
    assert _issue_error(engine, issue_id) is None and issue_state(engine, issue_id) == "sent"


@pytest.mark.parametrize("pipelining", [False, True])
def test_550_at_rcpt_bounces_only_that_reader(tmp_path: Path, pipelining: bool) -> None:
    sink = Sink(pipelining=pipelining)
    with smtp_server(sink) as port:
        cfg = make_cfg(tmp_path, port=port)
        engine = make_store(cfg)
        emails = add_subscribers(engine, 5)
        sink.permanent.add(emails[2])
        issue_id = add_issue(engine)
        report = delivery.send_issue(cfg, engine, issue_id)
    assert report.bounced == 1 and report.sent == 4
    assert _statuses(engine) == {e: ("bounced" if e == emails[2] else "active") for e in emails}
    counts = bounces_store.issue_counts(engine, [issue_id])[issue_id]
    assert counts.bounces == 1 and counts.complaints == 0


@pytest.mark.parametrize("reply", ["552 5.3.4 message refused by policy", "554 5.7.1 spam content"])
@pytest.mark.parametrize("pipelining", [False, True])
def test_5xx_after_the_data_bounces_nobody(tmp_path: Path, reply: str, pipelining: bool) -> None:
    sink = Sink(pipelining=pipelining, data_replies=[reply] * 6)
    with smtp_server(sink) as port:
        cfg = make_cfg(tmp_path, port=port, connections=1)
        engine = make_store(cfg)
        emails = add_subscribers(engine, 6)
        issue_id = add_issue(engine)
        with pytest.raises(SendAborted) as info:
            delivery.send_issue(cfg, engine, issue_id)
        assert info.value.refused
        assert set(_statuses(engine).values()) == {"active"}
        assert "message refused: " + reply[:3] in (_issue_error(engine, issue_id) or "")
        assert {state for state, _ in _rows(engine, issue_id).values()} == {"queued"}
        sink.data_replies.clear()
        delivery.send_issue(cfg, engine, issue_id)
    assert sink.recipients() == {e: 1 for e in emails}


@pytest.mark.parametrize("pipelining", [False, True])
def test_4xx_at_mail_from_is_a_retry(tmp_path: Path, pipelining: bool) -> None:
    sink = Sink(pipelining=pipelining, mail_from_replies=["451 4.7.1 greylisted"])
    with smtp_server(sink) as port:
        cfg = make_cfg(tmp_path, port=port, connections=1)
        engine = make_store(cfg)
        emails = add_subscribers(engine, 3)
        issue_id = add_issue(engine)
        report = delivery.send_issue(cfg, engine, issue_id)
    assert report.retrying == 1 and report.sent == 3
    assert sink.recipients() == {e: 1 for e in emails}
    assert set(_statuses(engine).values()) == {"active"}


@pytest.mark.parametrize("pipelining", [False, True])
def test_accept_then_drop_is_unknown_and_resent_once(tmp_path: Path, pipelining: bool) -> None:
    sink = Sink(pipelining=pipelining, keep_then_drop={2})
    with smtp_server(sink) as port:
        cfg = make_cfg(tmp_path, port=port, connections=1)
        engine = make_store(cfg)
        emails = add_subscribers(engine, 4)
        issue_id = add_issue(engine)
        report = delivery.send_issue(cfg, engine, issue_id)
    assert report.unknown == 1 and report.failed == 0
    # The second reader got the kept copy and the one resend: the duplicate the bound counts.
    got = sink.recipients()
    assert got[emails[1]] == 2 and all(got[e] == 1 for e in emails if e != emails[1])
    assert {s for s, _ in _rows(engine, issue_id).values()} == {"sent"}
    assert bounces_store.issue_counts(engine, [issue_id])[issue_id].unknown == 1
    assert set(_statuses(engine).values()) == {"active"}


@pytest.mark.parametrize("pipelining", [False, True])
def test_unknown_twice_is_presumed_delivered_not_failed(tmp_path: Path, pipelining: bool) -> None:
    sink = Sink(pipelining=pipelining, keep_then_drop={1, 2})
    with smtp_server(sink) as port:
        cfg = make_cfg(tmp_path, port=port, connections=1)
        engine = make_store(cfg)
        (only,) = add_subscribers(engine, 1)
        issue_id = add_issue(engine)
        report = delivery.send_issue(cfg, engine, issue_id)
    assert report.unknown == 2 and report.sent == 1 and report.failed == 0
    assert sink.recipients() == {only: 2}
    assert _rows(engine, issue_id)[only][0] == "sent"


def test_a_server_without_8bitmime_gets_7bit_clean_bodies(tmp_path: Path) -> None:
    sink = Sink(eightbit=False)
    with smtp_server(sink) as port:
        cfg = make_cfg(tmp_path, port=port)
        engine = make_store(cfg)
        emails = add_subscribers(engine, 2)
        issue_id = add_issue(engine)
        report = delivery.send_issue(cfg, engine, issue_id)
    assert report.sent == 2 and sink.recipients() == {e: 1 for e in emails}
    for got in sink.messages:
        assert got.content.isascii()
        msg = email.message_from_bytes(got.content, policy=email.policy.default)
        text = msg.get_body(("plain",))
        assert text is not None and "Zürich, 東京" in text.get_content()
        assert text["Content-Transfer-Encoding"] == "quoted-printable"
        # Headers are passed through untouched, long URLs included.
        assert msg["List-Unsubscribe"].startswith("<https://news.example.org/unsubscribe?t=")
        assert msg["List-Archive"] == "<https://news.example.org/issues/harbour-strike.html>"
        assert b"=?" not in got.content.split(b"\r\n\r\n", 1)[0].split(b"\r\nSubject:")[0]


def test_an_idn_address_is_delivered_intact_through_smtputf8(tmp_path: Path) -> None:
    sink = Sink()
    with smtp_server(sink) as port:
        cfg = make_cfg(tmp_path, port=port)
        engine = make_store(cfg)
        sub, _ = subscribers_store.add_subscriber(engine, "Müller@Bücher.example", "instant", status="active", now=T0)
        assert sub.email == "müller@bücher.example"
        issue_id = add_issue(engine)
        report = delivery.send_issue(cfg, engine, issue_id)
        # the confirmation mail of a sign-up too
        delivery.send_one(cfg, "müller@bücher.example", b"Subject: x\r\nTo: m\xc3\xbcller@b\xc3\xbccher.example\r\n\r\nhi\r\n")
    assert report.sent == 1 and report.bounced == 0
    got = sink.messages[0]
    assert got.rcpt_tos == ["müller@bücher.example"]
    msg = email.message_from_bytes(got.content, policy=email.policy.default)
    assert msg["To"] == "müller@bücher.example"
    assert "müller@bücher.example".encode() in got.content.split(b"\r\n\r\n", 1)[0]
    assert sink.messages[1].rcpt_tos == ["müller@bücher.example"]


def test_an_idn_domain_goes_as_a_label_to_a_relay_without_smtputf8(tmp_path: Path) -> None:
    sink = Sink(smtputf8=False)
    with smtp_server(sink) as port:
        cfg = make_cfg(tmp_path, port=port)
        engine = make_store(cfg)
        subscribers_store.add_subscriber(engine, "anna@bücher.example", "instant", status="active", now=T0)
        issue_id = add_issue(engine)
        report = delivery.send_issue(cfg, engine, issue_id)
    assert report.sent == 1
    assert sink.messages[0].rcpt_tos == ["anna@xn--bcher-kva.example"]
    assert issues_store.get_issue(engine, issue_id).state == "sent"


def test_reactivate_undoes_bounces_with_a_record_of_who(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from publisher.cli import main
    from tests.support.project import make_project

    cfg = make_project(tmp_path, samples=False)
    engine = make_store(cfg)
    emails = add_subscribers(engine, 3)
    issue_id = add_issue(engine)
    for e in emails[:2]:
        ev = bounces_store.Event(e, bounces_store.BounceKind.HARD, "dsn", "5.1.1", f"ref-{e}", issue_id)
        assert bounces_store.apply_event(engine, ev, bounce_after=1, soft_after=5, now=T0).status == "bounced"
    runner = CliRunner()
    config = ["--config", str(tmp_path / "config.toml")]
    result = runner.invoke(main, ["subscribers", "reactivate", emails[0], "--by", "editor-ann", *config])
    assert result.exit_code == 0, result.output
    assert _statuses(engine)[emails[0]] == "active" and _statuses(engine)[emails[1]] == "bounced"
    assert bounces_store.events_for(engine, emails[0])[-1][1:] == ("cli", "reactivated", "reactivated by editor-ann")
    result = runner.invoke(main, ["subscribers", "reactivate", "--bounced-since", "2026-11-01", *config])
    assert result.exit_code == 0 and emails[1] in result.output
    assert set(_statuses(engine).values()) == {"active"}


def test_cli_send_and_deliveries_report_bounces_unknowns_and_refusals(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from publisher.cli import main
    from tests.support.project import make_project

    sink = Sink(keep_then_drop={1}, mail_from_replies=[])
    with smtp_server(sink) as port:
        cfg = make_project(tmp_path, samples=False, site={"base_url": "https://news.example/"},
                           smtp={"host": "127.0.0.1", "port": port, "security": "none", "connections": 1, "retry_backoff": 0.01})
        engine = make_store(cfg)
        emails = add_subscribers(engine, 3)
        sink.permanent.add(emails[2])
        add_issue(engine)
        config = ["--config", str(tmp_path / "config.toml")]
        result = CliRunner().invoke(main, ["send", "harbour-strike", *config])
        assert "1 failed" in result.output and "1 unknown (resent once)" in result.output, result.output
        result = CliRunner().invoke(main, ["deliveries", "harbour-strike", *config])
        assert "1 bounce(s), 0 complaint(s), 1 unknown outcome(s)" in result.output, result.output
        assert f"failed {emails[2]}" in result.output


@pytest.mark.parametrize(
    ("stage", "code", "kind"),
    [
        ("MAIL FROM", 550, "refused"), ("RCPT TO", 550, "bounce"), ("DATA", 554, "refused"),
        ("end of data", 552, "refused"), ("MAIL FROM", 451, "retry"), ("RCPT TO", 452, "retry"),
        ("DATA", 421, "retry"), ("end of data", 451, "retry"),
    ],
)
def test_every_stage_is_classified(stage: str, code: int, kind: str) -> None:
    from publisher.mail.transports import SenderRefused, _classified

    error = _classified(stage, f"{stage} refused: {code}", code)
    got = "refused" if isinstance(error, SenderRefused) else "bounce" if error.permanent else "retry"
    assert got == kind and error.code == code


def test_a_refusal_on_one_connection_stops_the_others_between_messages(tmp_path: Path) -> None:
    # Workers get several messages per hand-off; a refusal on one connection must not let
    # the others finish theirs (at most the message in progress and one pipelined behind it).
    # The sink holds the other connection's replies until the refused one ends, so the
    # bound holds however the threads are scheduled (without the hold it failed now and then under load).
    sink = Sink(pipelining=True, data_replies=["554 5.7.1 spam content"], hold_others_after_refusal=True)
    with smtp_server(sink) as port:
        cfg = make_cfg(tmp_path, port=port, connections=2)
        engine = make_store(cfg)
        add_subscribers(engine, 200)
        issue_id = add_issue(engine)
        with pytest.raises(SendAborted) as info:
            delivery.send_issue(cfg, engine, issue_id)
    assert info.value.refused and set(_statuses(engine).values()) == {"active"}
    assert sink.data_count <= 6
    rows = _rows(engine, issue_id)
    assert sum(state == "sent" for state, _ in rows.values()) == len(sink.messages)
    assert {state for state, _ in rows.values()} <= {"sent", "queued"}
