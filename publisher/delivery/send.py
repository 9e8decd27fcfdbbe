"""Sending issues: one issue to its audience, a scheduler drain of every due issue, a test copy."""

from __future__ import annotations

import datetime as dt
import logging
from email.utils import make_msgid
from typing import Literal

from ..core.addresses import normalize_email
from ..core.clock import Clock, system_clock
from ..core.config import Config
from ..core.states import IssueState
from ..mail import tokens
from ..mail.dkim import signer_for
from ..mail.message import MessageTemplate, Personalizer, message_domain
from ..mail.transports import TransportFactory, transport_factory
from ..render.email import RenderedIssue
from ..store import deliveries as ledger
from ..store import issues as issues_store
from ..store import subscribers as subscribers_store
from ..store.engine import Engine
from ..store.issues import IssueRow
from .sender import ProgressFn, SendAborted, Sender, SendReport

log = logging.getLogger(__name__)

CLAIM_LEASE = 600.0  # seconds before a claim by a worker on another host is presumed dead


def rendered_from_row(issue: IssueRow) -> RenderedIssue:
    """A stored issue back in the renderer's form (the message template is built from it)."""
    kind: Literal["story", "digest"] = "digest" if issue.kind == "digest" else "story"
    return RenderedIssue(
        kind=kind,
        key=issue.key,
        subject=issue.subject,
        preheader=issue.preheader,
        mjml="",
        html=issue.html,
        text=issue.text,
        content_hash=issue.content_hash,
    )


def build_template(issue: IssueRow, cfg: Config, *, sent_at: dt.datetime) -> Personalizer:
    return MessageTemplate.build(rendered_from_row(issue), cfg, sent_at=sent_at)


def send_issue(
    cfg: Config,
    engine: Engine,
    issue_id: int,
    *,
    clock: Clock = system_clock,
    progress: ProgressFn | None = None,
    wait: bool = True,
    factory: TransportFactory | None = None,
    actor: str = "service",
) -> SendReport:
    """Send an approved issue (or resume one that is ``sending``) to its audience."""
    now = clock()
    recovered = ledger.recover(engine, now=now, lease=CLAIM_LEASE, issue_id=issue_id)
    issue, created = issues_store.start_issue(engine, issue_id, now=now, actor=actor)
    if issue.state is not IssueState.SENDING:
        # Nobody to send to yet: the issue stays released, and the first
        # send that reaches someone counts (a drain retries it).
        log.debug("issue %s: no recipients yet; stays %s", issue.label, issue.state.label)
        return SendReport(issues=[f"{issue.kind}:{issue.key} {issue.state.value} (no recipients yet)"], recovered=recovered)
    template = build_template(issue, cfg, sent_at=now)
    # Marks in groups of half a claim, as workers do: each UPDATE and commit
    # costs as much as sending several messages; what a crash can duplicate
    # stays bounded by the claim (Sender.max_in_flight), not by this.
    sender = Sender(cfg, engine, factory=factory, clock=clock, progress=progress,
                    record_every=max(50, cfg.smtp.batch_size // 2))
    try:
        report = sender.run(issue, template, wait=wait)
    except SendAborted as exc:
        exc.report.recovered += recovered
        exc.report.enqueued += created
        # The desk and `publisher deliveries` show why the send stopped.
        ledger.set_issue_error(engine, issue.id, exc.reason)
        raise
    ledger.set_issue_error(engine, issue.id, None)
    report.recovered += recovered
    report.enqueued += created
    finished = issues_store.finish_issue(engine, issue.id, now=clock())
    state = "sent" if finished else "sending"
    report.issues.append(f"{issue.kind}:{issue.key} {state}")
    log.info(
        "issue %s %s: %d sent, %d failed, %d retrying, %d queued (%s) in %.1fs",
        issue.kind, issue.key, report.sent, report.failed, report.retrying, report.queued, state, report.elapsed,
    )
    return report


def drain(cfg: Config, engine: Engine, *, clock: Clock = system_clock) -> SendReport:
    """One scheduler pass: send what is due: approved and sending issues, scheduled ones whose time has come."""
    total = SendReport()
    for issue in issues_store.due_issues(engine, now=clock()):
        try:
            total.add(send_issue(cfg, engine, issue.id, clock=clock, wait=False))
        except SendAborted as exc:
            log.warning("%s", exc)
            total.add(exc.report)
            break  # the transport is down for every issue alike
    return total


def send_test(
    cfg: Config, engine: Engine, issue: RenderedIssue, address: str, *, clock: Clock = system_clock
) -> None:
    """One copy to ``address``, subject marked as a test; no ledger rows."""
    to = normalize_email(address)
    now = clock()
    existing = subscribers_store.find_subscriber(engine, to)
    key = tokens.signing_key(cfg)
    # A test address that is not a subscriber gets a token for id 0, which
    # unsubscribes nobody.
    sid = existing.id if existing else 0
    url = cfg.site.url("unsubscribe?t=" + tokens.make_token(key, "unsubscribe", sid, to))
    template = MessageTemplate.build(issue, cfg, sent_at=now)
    message = template.personalize(
        to=to, unsubscribe_url=url, message_id=make_msgid("test", message_domain(cfg.email.sender_address)), test=True
    )
    send_one(cfg, to, message)
    log.info("test of %s %s sent to %s", issue.kind, issue.key, to)


def send_one(cfg: Config, to: str, message: bytes) -> None:
    """One message outside the ledger (tests, confirmations), DKIM-signed when configured, on a connection of its own."""
    signer = signer_for(cfg)
    if signer is not None:
        message = signer.sign(message)
    transport = transport_factory(cfg)()
    try:
        transport.send(cfg.email.sender_address, to, message)
    finally:
        transport.close()

