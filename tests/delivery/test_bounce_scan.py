"""`publisher bounces scan` over a Maildir of DSNs generated here (RFC 3464, Gmail, Exchange, Postfix, ARF)."""

from __future__ import annotations

import mailbox
from email.message import EmailMessage
from email.mime.text import MIMEText
from pathlib import Path

import pytest
from click.testing import CliRunner

from publisher.cli import main
from publisher.core.config import Config
from publisher.delivery import bounces
from publisher.delivery.verp import read_verp, verp_address
from publisher.mail import tokens
from publisher.store import bounces as bounces_store
from publisher.store import subscribers as subscribers_store

from tests.support.imap import PASSWORD, dovecot, needs_dovecot
from tests.support.project import make_project
from tests.support.smtp import add_issue, add_subscribers, make_store

RETURN_PATH = "bounce@news.example"


def _original(to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "briefs@news.example"
    msg["To"] = to
    msg["Subject"] = "Harbour strike ends"
    msg["X-Publisher-Issue"] = "story/harbour-strike"
    msg.set_content("the issue")
    return msg


def _report(report_type: str, head: str, notice: str, status_type: str, status: str, to: str) -> bytes:
    """A multipart/report written out by hand: the email package cannot generate message/* status parts."""
    original = _original(to).as_string()
    return (
        f"{head}MIME-Version: 1.0\nContent-Type: multipart/report; report-type={report_type}; boundary=\"RPT\"\n\n"
        f"--RPT\nContent-Type: text/plain\nContent-Description: notification\n\n{notice}\n"
        f"--RPT\nContent-Type: {status_type}\n\n{status}\n"
        f"--RPT\nContent-Type: message/rfc822\n\n{original}\n--RPT--\n"
    ).encode()


def rfc3464(to: str, *, status: str = "5.1.1", action: str = "failed", rcpt_to: str = "bounce@news.example",
            sender: str = "MAILER-DAEMON@mx.example.net", notice: str = "The message could not be delivered.") -> bytes:
    head = f"From: {sender}\nTo: {rcpt_to}\nSubject: Undelivered Mail Returned to Sender\n"
    fields = (
        "Reporting-MTA: dns; mx.example.net\n\n"
        f"Final-Recipient: rfc822; {to}\nOriginal-Recipient: rfc822; {to}\nAction: {action}\nStatus: {status}\n"
        f"Diagnostic-Code: smtp; {status[0]}50 {status} mailbox problem\n"
    )
    return _report("delivery-status", head, notice, "message/delivery-status", fields, to)


def gmail(to: str) -> bytes:
    return rfc3464(
        to, sender="Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
        notice=f"** Address not found **\n\nYour message wasn't delivered to {to} because the address couldn't be found.",
    )


def exchange(to: str) -> bytes:
    msg = MIMEText(
        "Your message\n\n  To: " + to + "\n  Subject: Harbour strike ends\n\n"
        "did not reach the following recipient(s):\n\n"
        f"{to} on Mon, 30 Nov 2026 12:00:00 +0000\n"
        "    The recipient name is not recognized\n    MSEXCH:IMS:Example:EX1:SRV 0 (000C05A6) Unknown Recipient\n"
    )
    msg["From"] = "System Administrator <postmaster@exchange.example.com>"
    msg["To"] = "briefs@news.example"
    msg["Subject"] = "Undeliverable: Harbour strike ends"
    return msg.as_bytes()


def postfix(to: str) -> bytes:
    """What Postfix's bounce(8) sends: its notice, then a DSN with Postfix's own fields."""
    head = "From: MAILER-DAEMON@mail.example.org (Mail Delivery System)\nTo: briefs@news.example\nSubject: Undelivered Mail Returned to Sender\n"
    notice = (
        "This is the mail system at host mail.example.org.\n\n"
        "I'm sorry to have to inform you that your message could not\nbe delivered to one or more recipients.\n\n"
        "                   The mail system\n\n"
        f"<{to}>: host mx.example.org said: 550 5.1.1 User unknown (in reply to RCPT TO command)"
    )
    fields = (
        "Reporting-MTA: dns; mail.example.org\nX-Postfix-Queue-ID: 4C7B61A2F\nX-Postfix-Sender: rfc822; briefs@news.example\n"
        "Arrival-Date: Mon, 30 Nov 2026 12:00:00 +0000 (UTC)\n\n"
        f"Final-Recipient: rfc822; {to}\nAction: failed\nStatus: 5.1.1\nRemote-MTA: dns; mx.example.org\n"
        "Diagnostic-Code: smtp; 550 5.1.1 User unknown\n"
    )
    return _report("delivery-status", head, notice, "message/delivery-status", fields, to)


def complaint(to: str) -> bytes:
    head = "From: staff@hotmail.example\nTo: fbl@news.example\nSubject: complaint about message\n"
    fields = f"Feedback-Type: abuse\nUser-Agent: FBL/1.0\nVersion: 1\nOriginal-Rcpt-To: {to}\n"
    return _report("feedback-report", head, "This is an email abuse report.", "message/feedback-report", fields, to)


def _project(tmp: Path) -> tuple[Config, Path]:
    box = tmp / "bounces"
    mailbox.Maildir(str(box), create=True)
    cfg = make_project(
        tmp, samples=False, bounces={"return_path": RETURN_PATH, "maildir": "bounces", "soft_after": 2},
        email={"sender_address": "briefs@news.example"},
    )
    return cfg, box


def test_scan_reads_every_format_and_applies_each_once(tmp_path: Path) -> None:
    cfg, path = _project(tmp_path)
    engine = make_store(cfg)
    emails = add_subscribers(engine, 8)
    issue_id = add_issue(engine)
    box = mailbox.Maildir(str(path), create=False)
    key = tokens.signing_key(cfg)
    reader7 = subscribers_store.find_subscriber(engine, emails[7])
    assert reader7 is not None
    verp = verp_address(cfg, key, issue_id, reader7.id)
    assert verp and verp.startswith("bounce+") and read_verp(cfg, key, verp) is not None
    assert read_verp(cfg, key, verp.replace(verp.split(".")[-2][-3:], "000")) is None  # a forged token
    for msg in (
        rfc3464(emails[0]), gmail(emails[1]), exchange(emails[2]), postfix(emails[3]), complaint(emails[4]),
        rfc3464(emails[5], status="4.2.2", action="delayed"), rfc3464(emails[5], status="4.2.2", action="delayed"),
        # a DSN whose report names a rewritten address: the VERP token still finds the reader
        rfc3464("someone-else@relay.example", rcpt_to=verp),
        MIMEText("just a reply, not a bounce").as_bytes(),
    ):
        box.add(msg)
    runner = CliRunner()
    result = runner.invoke(main, ["bounces", "scan", "--config", str(tmp_path / "config.toml")])
    assert result.exit_code == 0, result.output
    status = {e: subscribers_store.find_subscriber(engine, e).status for e in emails}  # type: ignore[union-attr]
    assert [status[e] for e in emails] == [
        "bounced", "bounced", "bounced", "bounced", "unsubscribed", "bounced", "active", "bounced",
    ]
    assert "8 new event(s)" in result.output and "1 not a bounce" in result.output
    counts = bounces_store.issue_counts(engine, [issue_id])
    assert counts[issue_id].bounces == 1  # only the VERP return path names the issue
    # A second scan of the same folder records nothing new.
    again = runner.invoke(main, ["bounces", "scan", "--config", str(tmp_path / "config.toml")])
    assert again.exit_code == 0 and "0 new event(s)" in again.output and "8 seen before" in again.output


def test_soft_bounces_count_but_do_not_bounce_alone(tmp_path: Path) -> None:
    cfg, path = _project(tmp_path)
    engine = make_store(cfg)
    (reader,) = add_subscribers(engine, 1)
    box = mailbox.Maildir(str(path), create=False)
    box.add(rfc3464(reader, status="4.2.2", action="delayed"))
    report = bounces.scan(cfg, engine)
    assert report.events == 1 and report.bounced == []
    sub = subscribers_store.find_subscriber(engine, reader)
    assert sub is not None and sub.status == "active" and sub.bounces == 0


@needs_dovecot
def test_scan_reads_an_imap_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from imap_tools import MailBoxUnencrypted

    monkeypatch.setenv("BOUNCE_IMAP_PASSWORD", PASSWORD)
    with dovecot() as port:
        cfg = make_project(
            tmp_path, samples=False, email={"sender_address": "briefs@news.example"},
            bounces={"imap_host": "127.0.0.1", "imap_port": port, "imap_security": "none", "imap_user": "bounces",
                     "imap_password_env": "BOUNCE_IMAP_PASSWORD"},
        )
        engine = make_store(cfg)
        emails = add_subscribers(engine, 3)
        with MailBoxUnencrypted("127.0.0.1", port=port).login("bounces", PASSWORD, "INBOX") as box:
            for raw in (rfc3464(emails[0]), complaint(emails[1])):
                box.append(raw)
        runner = CliRunner()
        config = ["--config", str(tmp_path / "config.toml")]
        result = runner.invoke(main, ["bounces", "scan", "--imap", *config])
        assert result.exit_code == 0, result.output
        assert "2 new event(s)" in result.output
        statuses = [subscribers_store.find_subscriber(engine, e).status for e in emails]  # type: ignore[union-attr]
        assert statuses == ["bounced", "unsubscribed", "active"]
        again = runner.invoke(main, ["bounces", "scan", "--imap", *config])
        assert "0 new event(s), 2 seen before" in again.output
        monkeypatch.setenv("BOUNCE_IMAP_PASSWORD", "wrong")
        refused = runner.invoke(main, ["bounces", "scan", "--imap", *config])
        assert refused.exit_code == 1 and "IMAP 127.0.0.1" in refused.output
