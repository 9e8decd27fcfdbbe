"""Asynchronous bounces: delivery-status notifications read from a Maildir or IMAP folder.

``flufl.bounce`` knows the formats (RFC 3464 reports and the many
non-standard ones of Exchange, Postfix, qmail, Gmail...); the VERP return
path, when configured, says which reader and which issue bounced even when
the report names an address the relay rewrote. Feedback reports (RFC 5965,
``report-type=feedback-report``) are complaints. Each message is one set of
events with ``raw_ref`` naming it, so scanning a folder twice changes nothing.
"""

from __future__ import annotations

import email
import email.utils
import imaplib
import logging
import mailbox
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

from flufl.bounce import all_failures

from ..core.clock import Clock, system_clock
from ..core.config import Config
from ..core.errors import DeliveryError
from ..mail import tokens
from ..store import bounces as bounces_store
from ..store import subscribers as subscribers_store
from ..store.bounces import BounceKind, Event
from ..store.engine import Engine
from .verp import read_verp

log = logging.getLogger(__name__)


@dataclass
class ScanReport:
    messages: int = 0  # read
    events: int = 0  # new events recorded
    repeated: int = 0  # events already recorded by an earlier scan
    ignored: int = 0  # messages that are neither a bounce nor a complaint
    bounced: list[str] = field(default_factory=list)  # subscribers newly marked bounced
    unsubscribed: list[str] = field(default_factory=list)  # complaints


def _is_feedback_report(msg: Message) -> bool:
    return msg.get_content_type() == "multipart/report" and msg.get_param("report-type") == "feedback-report"


def _feedback_address(msg: Message) -> str | None:
    """The complaining reader: Original-Rcpt-To of the report, else the To of the returned message."""
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            payload = part.get_payload()
            fields = payload[0] if isinstance(payload, list) and payload else part
            rcpt = fields.get("Original-Rcpt-To") if isinstance(fields, Message) else None
            if rcpt:
                return str(rcpt).strip().strip("<>")
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            inner = part.get_payload()
            original = inner[0] if isinstance(inner, list) and inner else None
            if isinstance(original, Message) and original.get("To"):
                return email.utils.parseaddr(str(original["To"]))[1] or None
    return None


def _verp_targets(msg: Message) -> list[str]:
    """Where the report was sent: our VERP address, if any, sits in one of these."""
    out = []
    for name in ("Delivered-To", "X-Original-To", "To", "Envelope-To"):
        for value in msg.get_all(name) or []:
            out.append(email.utils.parseaddr(str(value))[1])
    return [a for a in out if a]


def events_of(cfg: Config, engine: Engine, key: bytes, msg: Message, raw_ref: str, source: str = "dsn") -> list[Event]:
    """The bounce or complaint events one returned message stands for (empty: not a bounce)."""
    verp = next((t for t in (read_verp(cfg, key, a) for a in _verp_targets(msg)) if t is not None), None)
    issue_id = verp.issue_id if verp else None
    by_verp = subscribers_store.get_subscriber(engine, verp.subscriber_id) if verp else None
    detail = str(msg.get("Subject", ""))[:200]
    if _is_feedback_report(msg):
        address = by_verp.email if by_verp else _feedback_address(msg)
        return [Event(address, BounceKind.COMPLAINT, source, detail, raw_ref, issue_id)] if address else []
    try:
        temporary, permanent = all_failures(msg)
    except Exception as exc:  # a detector tripping on odd mail (e.g. no From) must not stop the scan
        log.warning("%s: bounce detectors failed (%r); treated as not a bounce", raw_ref, exc)
        temporary, permanent = frozenset(), frozenset()
    found: list[tuple[str, BounceKind]] = [(a.decode("utf-8", "replace"), BounceKind.HARD) for a in sorted(permanent)]
    found += [(a.decode("utf-8", "replace"), BounceKind.SOFT) for a in sorted(temporary - permanent)]
    if by_verp is not None:
        # The token names the reader even if the report shows a rewritten address.
        kind = found[0][1] if found else BounceKind.HARD
        return [Event(by_verp.email, kind, source, detail, raw_ref, issue_id)]
    return [Event(address, kind, source, detail, raw_ref, issue_id) for address, kind in found]


def apply_all(cfg: Config, engine: Engine, events: list[Event], report: ScanReport, *, clock: Clock) -> None:
    for event in events:
        applied = bounces_store.apply_event(
            engine, event, bounce_after=cfg.smtp.bounce_after, soft_after=cfg.bounces.soft_after, now=clock()
        )
        if not applied.recorded:
            report.repeated += 1
            continue
        report.events += 1
        if applied.status == "bounced":
            report.bounced.append(event.email)
        elif applied.status == "unsubscribed":
            report.unsubscribed.append(event.email)


def _maildir_messages(path: Path) -> Iterator[tuple[str, Message]]:
    if not (path / "cur").is_dir() and not (path / "new").is_dir():
        raise DeliveryError(f"{path}: not a Maildir (no cur/ or new/)")
    box = mailbox.Maildir(str(path), factory=None, create=False)
    for key in sorted(box.keys()):
        yield f"maildir:{key}", email.message_from_bytes(box.get_bytes(key))


def _imap_messages(cfg: Config) -> Iterator[tuple[str, Message]]:
    from imap_tools import MailBox, MailBoxStartTls, MailBoxUnencrypted
    from imap_tools.errors import ImapToolsError

    b = cfg.bounces
    password = cfg.secret(b.imap_password_env)
    if not password:
        raise DeliveryError(f"bounces.imap_password_env: ${b.imap_password_env} is empty")
    kind = {"tls": MailBox, "starttls": MailBoxStartTls, "none": MailBoxUnencrypted}[b.imap_security]
    try:
        with kind(b.imap_host, port=b.imap_port).login(b.imap_user, password, b.imap_folder) as box:
            # UIDVALIDITY in the reference: a recreated folder reuses UIDs.
            validity = box.folder.status(b.imap_folder, ["UIDVALIDITY"]).get("UIDVALIDITY", 0)
            for msg in box.fetch(mark_seen=False, bulk=50):
                yield f"imap:{b.imap_host}/{b.imap_folder};{validity}:{msg.uid}", msg.obj
    except (OSError, imaplib.IMAP4.error, ImapToolsError) as exc:
        raise DeliveryError(f"IMAP {b.imap_host}:{b.imap_port}/{b.imap_folder}: {exc}") from exc


def scan(
    cfg: Config, engine: Engine, *, maildir: Path | None = None, imap: bool = False, clock: Clock = system_clock
) -> ScanReport:
    """Read every message of the bounce mailbox and apply what it reports."""
    if maildir is None and not imap:
        if cfg.bounces.maildir:
            maildir = Path(cfg.bounces.maildir).expanduser()
            if not maildir.is_absolute():
                maildir = Path(cfg.source).parent / maildir
        elif cfg.bounces.imap_host:
            imap = True
        else:
            raise DeliveryError("no bounce mailbox: set bounces.maildir or bounces.imap_host (or pass --maildir)")
    key = tokens.signing_key(cfg)
    report = ScanReport()
    messages = _imap_messages(cfg) if imap else _maildir_messages(maildir or Path())
    for raw_ref, msg in messages:
        report.messages += 1
        events = events_of(cfg, engine, key, msg, raw_ref)
        if not events:
            report.ignored += 1
            continue
        apply_all(cfg, engine, events, report, clock=clock)
    log.info("bounce scan: %d messages, %d new events, %d seen before, %d not bounces",
             report.messages, report.events, report.repeated, report.ignored)
    return report
