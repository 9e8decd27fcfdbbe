"""Transports (SMTP, Maildir outbox) and the sender that drains the ledger.

Shape of a send: the calling thread is the only one that talks to the
database. It claims a batch of ledger rows, paces them through the rate
limiter into a small work queue, and N worker threads (one SMTP connection
each, reused) hand messages to the server. Each accepted message comes back
on a results queue and is recorded ``sent`` in small groups. What a kill -9
can duplicate is therefore bounded by the rows claimed and not yet recorded
(:attr:`Sender.max_in_flight`).

Per recipient the work is byte substitution on a pre-serialised message
(:class:`newsletter.MessageTemplate`), and the SMTP DATA payload is sent
as-is when it is already in wire form, so a Python sender is not the
bottleneck of a local relay.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import hashlib
import logging
import mailbox
import queue
import re
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formataddr, format_datetime, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from sqlalchemy.engine import Engine

from . import ledger, tokens
from .clock import Clock, system_clock
from .config import Config, SmtpConfig
from .errors import DeliveryError, NotFound, PublisherError, StateError, TokenError

if TYPE_CHECKING:
    from .newsletter import RenderedIssue

log = logging.getLogger(__name__)

CONFIRM_MAX_AGE = 7 * 24 * 3600  # seconds a confirmation link stays valid
CLAIM_LEASE = 600.0  # seconds before a claim by a worker on another host is presumed dead
OUTBOX = "outbox"


class TransportUnavailable(DeliveryError):
    """The server cannot be reached or refuses us (connect, TLS, login): no recipient is to blame."""


class SendAborted(PublisherError):
    """A send stopped before its end; the ledger keeps the rest queued for the next run."""

    def __init__(self, issue_key: str, message: str, report: SendReport) -> None:
        self.issue_key = issue_key
        self.report = report
        super().__init__(f"{issue_key}: {message}")


# ----------------------------------------------------------------- transports


class Transport(Protocol):
    def send(self, sender: str, recipient: str, message: bytes, *, wire: bool = False) -> None:
        """Hand over one message; ``wire``: it is already a DATA payload (see :func:`wire_data`)."""
    
    def close(self) -> None: ...


TransportFactory = Callable[[], Transport]

_BARE_EOL = re.compile(rb"\r\n|\r|\n")
_UNSAFE_ADDR = re.compile(r"[\x00-\x20<>\x7f]")


def wire_data(message: bytes) -> bytes:
    """The DATA payload: CRLF line ends, leading dots doubled, terminated.

    The fast check (a few C-level scans) spares the two regex passes over
    every 40 KB message when the template already produced wire form.
    """
    crlf = message.count(b"\r\n")
    if message.count(b"\n") != crlf or message.count(b"\r") != crlf:
        message = _BARE_EOL.sub(b"\r\n", message)
    if b"\n." in message:
        message = message.replace(b"\n.", b"\n..")
    if message.startswith(b"."):
        message = b"." + message
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return message + b".\r\n"


# Distinct shapes and lengths, none a substring of another.
_PROBES = (
    ("rcpt-probe-a1@probe.invalid", "https://probe.invalid/unsub-a1", "<mid-a1@probe.invalid>"),
    ("rcpt-probe-bb22c@probe.invalid", "https://probe.invalid/unsub-bb22c?t=x.y", "<mid-bb22c.x@probe.invalid>"),
)


class WireTemplate:
    """Per-recipient SMTP DATA payloads without a pass over each message.

    Line-end normalisation and dot-stuffing cost more than everything else
    a recipient needs (a 37 KB newsletter has CSS lines starting with a dot),
    yet they only depend on the template. So the template is personalised
    twice with probe values, both results are put in wire form and split at
    the probes; if the two layouts agree, the wire chunks are reused for
    every recipient. The real ``personalize`` still runs first for each
    recipient, so its validation (header injection, bad addresses) applies.
    Anything unusual (layouts differ, a value that would need escaping or
    stuffing) falls back to the slow, always-correct path.
    """

    def __init__(self, template: Personalizer) -> None:
        self.template = template
        self._layout = self._split(template)

    @property
    def fast(self) -> bool:
        return self._layout is not None

    @staticmethod
    def _split(template: Personalizer) -> tuple[tuple[bytes, ...], tuple[int, ...]] | None:
        layouts = []
        for to, url, mid in _PROBES:
            values = (to.encode("ascii"), url.encode("ascii"), mid.encode("ascii"))
            wire = wire_data(template.personalize(to=to, unsubscribe_url=url, message_id=mid))
            pattern = re.compile(b"|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))
            chunks: list[bytes] = []
            slots: list[int] = []
            pos = 0
            for m in pattern.finditer(wire):
                chunks.append(wire[pos : m.start()])
                slots.append(values.index(m.group()))
                pos = m.end()
            chunks.append(wire[pos:])
            layouts.append((tuple(chunks), tuple(slots)))
        first = layouts[0]
        if any(layout != first for layout in layouts) or set(first[1]) != {0, 1, 2}:
            log.info("message template needs per-recipient wire conversion")
            return None
        return first

    def personalize(self, *, to: str, unsubscribe_url: str, message_id: str, test: bool = False) -> bytes:
        """The DATA payload for one recipient (terminated, ready for :class:`SmtpTransport`)."""
        raw = self.template.personalize(to=to, unsubscribe_url=unsubscribe_url, message_id=message_id, test=test)
        values = (to, unsubscribe_url, message_id)
        if (
            test
            or self._layout is None
            or any(not v.isascii() or v.startswith(".") or "\r" in v or "\n" in v for v in values)
            or any(c in unsubscribe_url for c in "&<>\"'")
        ):
            return wire_data(raw)
        chunks, slots = self._layout
        encoded = (to.encode("ascii"), unsubscribe_url.encode("ascii"), message_id.encode("ascii"))
        parts: list[bytes] = []
        for chunk, slot in zip(chunks, slots):
            parts.append(chunk)
            parts.append(encoded[slot])
        parts.append(chunks[-1])
        return b"".join(parts)


class SmtpTransport:
    """One SMTP connection, opened lazily and reused for every message."""

    def __init__(self, cfg: SmtpConfig, password: str | None) -> None:
        self.cfg = cfg
        self.password = password
        self._conn: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        cfg = self.cfg
        conn: smtplib.SMTP | None = None
        try:
            if cfg.security == "tls":
                conn = smtplib.SMTP_SSL(
                    cfg.host, cfg.port, timeout=cfg.timeout, context=ssl.create_default_context()
                )
            else:
                conn = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
            conn.ehlo()
            if cfg.security == "starttls":
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
            if cfg.username:
                conn.login(cfg.username, self.password or "")
        except (OSError, smtplib.SMTPException) as exc:
            if conn is not None:
                _quietly_close(conn)
            code = getattr(exc, "smtp_code", None)
            raise TransportUnavailable(
                f"SMTP {cfg.host}:{cfg.port}: {exc}", code=code if isinstance(code, int) else None
            ) from exc
        return conn

    def send(self, sender: str, recipient: str, message: bytes, *, wire: bool = False) -> None:
        payload = message if wire else wire_data(message)
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self._connect()
            try:
                self._transaction(self._conn, sender, recipient, payload, message)
                return
            except (smtplib.SMTPServerDisconnected, OSError) as exc:
                # An idle connection the server closed, or a drop mid-message:
                # one immediate retry on a fresh connection, then it is an
                # ordinary temporary failure with backoff.
                self.close()
                if attempt == 2:
                    raise DeliveryError(f"connection lost: {exc}") from exc
                log.info("SMTP connection lost (%s); reconnecting", exc)
        raise AssertionError("unreachable")

    def _transaction(
        self, conn: smtplib.SMTP, sender: str, recipient: str, payload: bytes, message: bytes
    ) -> None:
        # Commands are written directly rather than through smtplib's
        # mail()/rcpt(): those re-parse both addresses with email.utils on
        # every message, which cost more than the rest of the transaction.
        # The addresses were validated when stored; this guards the syntax.
        for address in (sender, recipient):
            if _UNSAFE_ADDR.search(address):
                raise DeliveryError(f"refusing envelope address {address!r}", permanent=True)
        options = ""
        if not message.isascii() and conn.has_extn("8bitmime"):
            options += " BODY=8BITMIME"
        if not (sender.isascii() and recipient.isascii()):
            if not conn.has_extn("smtputf8"):
                raise DeliveryError(f"{recipient}: server lacks SMTPUTF8", permanent=True)
            options += " SMTPUTF8"
        mail = f"MAIL FROM:<{sender}>{options}\r\n".encode("utf-8")
        rcpt = f"RCPT TO:<{recipient}>\r\n".encode("utf-8")
        if conn.has_extn("pipelining"):
            # RFC 2920: one write and one round trip for the envelope.
            conn.send(mail + rcpt + b"DATA\r\n")
            replies = [conn.getreply(), conn.getreply(), conn.getreply()]
        else:
            replies = []
            steps: tuple[tuple[bytes, tuple[int, ...]], ...] = (
                (mail, (250,)), (rcpt, (250, 251)), (b"DATA\r\n", (354,))
            )
            for command, ok in steps:
                conn.send(command)
                replies.append(conn.getreply())
                if replies[-1][0] not in ok:
                    break
        for (code, resp), ok, what in zip(
            replies, ((250,), (250, 251), (354,)), ("MAIL FROM", "RCPT TO", "DATA")
        ):
            if code not in ok:
                if len(replies) == 3 and replies[2][0] == 354:
                    # A pipelined DATA was accepted after a refused envelope:
                    # end it empty, which the server rejects for want of recipients.
                    conn.send(b".\r\n")
                    conn.getreply()
                self._reset(conn, code)
                raise _classified(f"{what} refused: {code} {_text(resp)}", code)
        conn.send(payload)
        code, resp = conn.getreply()
        if code != 250:
            self._reset(conn, code)
            raise _classified(f"message refused: {code} {_text(resp)}", code)

    def _reset(self, conn: smtplib.SMTP, code: int) -> None:
        if code == 421:  # the server is closing the channel
            self.close()
            return
        try:
            conn.rset()
        except (smtplib.SMTPException, OSError):
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                _quietly_close(conn)


def _quietly_close(conn: smtplib.SMTP) -> None:
    try:
        conn.close()
    except OSError as exc:  # closing a dead socket: nothing left to do
        log.debug("close failed: %s", exc)


def _text(resp: bytes | str) -> str:
    return resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)


def _classified(message: str, code: int) -> DeliveryError:
    return DeliveryError(message, permanent=500 <= code < 600, code=code)


class MaildirTransport:
    """The outbox: each message a file in a real Maildir (``state/outbox``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.box = mailbox.Maildir(str(path), create=True)
        except OSError as exc:
            raise TransportUnavailable(f"maildir {path}: {exc}") from exc

    def send(self, sender: str, recipient: str, message: bytes, *, wire: bool = False) -> None:
        if wire:
            raise ValueError("the Maildir transport takes messages, not SMTP DATA payloads")
        # What a local MDA adds, so the envelope survives in the file.
        head = f"Return-Path: <{sender}>\nDelivered-To: {recipient}\n".encode("utf-8")
        try:
            self.box.add(head + message.replace(b"\r\n", b"\n"))
        except (OSError, mailbox.Error) as exc:
            raise TransportUnavailable(f"maildir {self.path}: {exc}") from exc

    def close(self) -> None:
        return None


def outbox_path(cfg: Config) -> Path:
    return cfg.paths.state / OUTBOX


def transport_factory(cfg: Config) -> TransportFactory:
    """SMTP when ``smtp.host`` is set, else the Maildir outbox."""
    if cfg.smtp.host:
        password = cfg.smtp_password
        return lambda: SmtpTransport(cfg.smtp, password)
    path = outbox_path(cfg)
    return lambda: MaildirTransport(path)


def connections(cfg: Config) -> int:
    # Maildir writes are local and fast; parallel writers only contend.
    return max(1, cfg.smtp.connections) if cfg.smtp.host else 1


# ---------------------------------------------------------------- rate limit


class RateLimiter:
    """Messages per second (even spacing) and per rolling hour, across threads.

    ``reserve`` books the next slot and says how long to wait for it; the
    hourly window is seeded from the ledger so a restart does not reset it.
    """

    def __init__(
        self,
        per_second: float,
        per_hour: int,
        *,
        history: Sequence[float] = (),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_second = per_second
        self.per_hour = per_hour
        self._mono = monotonic
        self._next = 0.0
        self._lock = threading.Lock()
        self._window: collections.deque[float] = collections.deque(maxlen=per_hour or None)
        if per_hour:
            self._window.extend(sorted(history)[-per_hour:])

    def _slot(self, now: float) -> float:
        t = now
        if self.per_second > 0:
            t = max(t, self._next)
        if self.per_hour and len(self._window) >= self.per_hour:
            t = max(t, self._window[0] + 3600.0)
        return t

    def delay(self) -> float:
        """Seconds until the next slot, without booking it."""
        with self._lock:
            now = self._mono()
            return self._slot(now) - now

    def reserve(self) -> float:
        with self._lock:
            now = self._mono()
            t = self._slot(now)
            if self.per_second > 0:
                self._next = t + 1.0 / self.per_second
            if self.per_hour:
                self._window.append(t)
            return t - now


def limiter_for(cfg: Config, engine: Engine, clock: Clock) -> RateLimiter:
    history: list[float] = []
    if cfg.smtp.rate_per_hour:
        now_wall = clock()
        now_mono = time.monotonic()
        for at in ledger.sent_since(engine, now_wall - dt.timedelta(hours=1)):
            history.append(now_mono - (now_wall - at).total_seconds())
    return RateLimiter(cfg.smtp.rate_per_second, cfg.smtp.rate_per_hour, history=history)


# --------------------------------------------------------------------- sender


class Personalizer(Protocol):
    """What the sender needs of a message template (newsletter.MessageTemplate)."""

    def personalize(self, *, to: str, unsubscribe_url: str, message_id: str, test: bool = False) -> bytes: ...


@dataclass
class SendReport:
    sent: int = 0
    failed: int = 0  # permanently, or out of attempts
    retrying: int = 0  # temporary failures put back with backoff
    skipped: int = 0  # rows of the issue whose subscriber left before their turn (issue total)
    bounced: int = 0  # subscribers newly marked bounced
    recovered: int = 0  # rows taken back from dead workers
    queued: int = 0  # rows still waiting at the end (retries not yet due)
    enqueued: int = 0  # ledger rows created by this run
    issues: list[str] = field(default_factory=list)  # "kind:key state"
    elapsed: float = 0.0

    def add(self, other: SendReport) -> None:
        for f in dataclasses.fields(self):
            if f.name == "issues":
                self.issues.extend(other.issues)
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


ProgressFn = Callable[[ledger.Progress], None]


@dataclass(frozen=True, slots=True)
class _Job:
    claimed: ledger.Claimed
    message: bytes


@dataclass(frozen=True, slots=True)
class _Result:
    job: _Job
    outcome: Literal["sent", "failed", "unavailable"]
    error: DeliveryError | None = None


_STOP = object()


def message_domain(address: str) -> str:
    return address.rpartition("@")[2] or "localhost"


class Sender:
    """Drains one issue's ledger through a pool of transport workers."""

    def __init__(
        self,
        cfg: Config,
        engine: Engine,
        *,
        factory: TransportFactory | None = None,
        n_connections: int | None = None,
        limiter: RateLimiter | None = None,
        clock: Clock = system_clock,
        progress: ProgressFn | None = None,
        record_every: int = 50,
        sleep: Callable[[float], None] = time.sleep,
        wire: bool | None = None,
    ) -> None:
        self.cfg = cfg
        self.engine = engine
        self.factory = factory or transport_factory(cfg)
        # SMTP takes DATA payloads prepared once per template; Maildir files want plain messages.
        self.wire = bool(cfg.smtp.host) if wire is None else wire
        self.n = n_connections or connections(cfg)
        self.limiter = limiter or limiter_for(cfg, engine, clock)
        self.clock = clock
        self.progress = progress
        self.record_every = max(1, record_every)
        self.sleep = sleep
        self.batch = max(1, cfg.smtp.batch_size)
        self.worker = ledger.worker_id()
        self.key = tokens.signing_key(cfg)
        self.sender = cfg.email.sender_address
        self._domain = message_domain(cfg.email.sender_address)
        self._progress_at = 0.0

    @property
    def max_in_flight(self) -> int:
        """Most rows claimed and not yet recorded at any moment (the duplicate bound)."""
        return self.batch + max(self.batch // 2, self.n * 2)

    def message_id(self, issue_id: int, delivery_id: int) -> str:
        # Stable per delivery: a resend after a crash carries the same
        # Message-ID, so receiving systems can drop the duplicate.
        digest = hashlib.sha256(f"{self._domain}:{issue_id}:{delivery_id}".encode()).hexdigest()[:12]
        return f"<{issue_id}.{delivery_id}.{digest}@{self._domain}>"

    def unsubscribe_url(self, subscriber_id: int, email: str) -> str:
        return self.cfg.site.url("unsubscribe?t=" + tokens.make_token(self.key, "unsubscribe", subscriber_id, email))

    def run(self, issue: ledger.IssueRow, template: Personalizer, *, wait: bool = True) -> SendReport:
        """Send every due queued row of ``issue``.

        ``wait``: keep going until nothing is queued (sleeping for retries);
        otherwise return once no row is due (the scheduler comes back).
        Raises :class:`SendAborted` when the server is unreachable, leaving
        the unsent rows queued.
        """
        report = SendReport()
        started = time.monotonic()
        if self.wire:
            template = WireTemplate(template)
        work: queue.Queue[object] = queue.Queue(maxsize=self.n * 2)
        results: queue.Queue[_Result] = queue.Queue()
        threads = [
            threading.Thread(target=self._work, args=(work, results), name=f"send-{i}", daemon=True)
            for i in range(self.n)
        ]
        for t in threads:
            t.start()
        pending: collections.deque[ledger.Claimed] = collections.deque()
        outstanding = 0  # claimed and not yet recorded
        unrecorded: list[_Result] = []
        unavailable_streak = 0
        abort: DeliveryError | None = None
        low_water = max(self.batch // 2, self.n * 2)
        try:
            while True:
                # 1. record what the workers finished
                block = outstanding > 0 and not pending
                new: list[_Result] = []
                try:
                    new.append(results.get(timeout=0.05) if block else results.get_nowait())
                    while True:
                        new.append(results.get_nowait())
                except queue.Empty:
                    pass
                for r in new:
                    if r.outcome == "unavailable":
                        unavailable_streak += 1
                        abort = r.error
                    elif r.outcome == "sent":
                        unavailable_streak = 0
                unrecorded.extend(new)
                if unrecorded and (
                    len(unrecorded) >= self.record_every or not pending or outstanding == len(unrecorded)
                ):
                    outstanding -= self._record(issue.id, unrecorded, report)
                    unrecorded = []
                if unavailable_streak >= self.n * 2:
                    break
                # 2. dispatch claimed rows, paced by the rate limit
                if pending:
                    delay = self.limiter.delay()
                    if delay > 0:
                        self.sleep(min(delay, 0.05))
                        continue
                    try:
                        job = self._job(issue, template, pending[0])
                    except DeliveryError as exc:
                        # personalize refused this recipient (an address
                        # that could inject headers): fail it, go on.
                        unrecorded.append(_Result(_Job(pending.popleft(), b""), "failed", exc))
                        continue
                    try:
                        work.put(job, timeout=0.05)
                    except queue.Full:
                        continue
                    pending.popleft()
                    self.limiter.reserve()
                    continue
                # 3. claim more when the pipeline runs low
                if outstanding <= low_water:
                    # Claim only what can go out soon: a row held in
                    # "sending" while we sleep on the hourly limit would be
                    # a needless duplicate if this process died.
                    delay = self.limiter.delay()
                    if delay > 1.0:
                        if outstanding:
                            continue
                        if not wait:
                            break
                        self.sleep(min(delay, 5.0))
                        continue
                    claimed = ledger.claim(self.engine, issue.id, self.worker, self._claim_size(), now=self.clock())
                    if claimed:
                        pending.extend(claimed)
                        outstanding += len(claimed)
                        continue
                    if outstanding:
                        continue
                    due = ledger.next_retry(self.engine, issue.id)
                    if due is None:
                        break
                    if not wait:
                        break
                    self.sleep(min(max((due - self.clock()).total_seconds(), 0.01), 5.0))
        finally:
            for _ in threads:
                work.put(_STOP)
            for t in threads:
                t.join()
            while True:
                try:
                    unrecorded.append(results.get_nowait())
                except queue.Empty:
                    break
            if unrecorded:
                self._record(issue.id, unrecorded, report)
            released = ledger.release(self.engine, self.worker)
            if released:
                log.info("issue %s: %d claimed deliveries returned to the queue", issue.key, released)
            report.elapsed = time.monotonic() - started
        left = ledger.progress(self.engine, issue.id)
        report.queued = left.queued
        report.skipped = left.skipped
        if self.progress is not None:
            self.progress(left)
        if abort is not None and unavailable_streak >= self.n * 2:
            raise SendAborted(issue.key, f"transport unavailable, {left.queued} left queued: {abort}", report)
        return report

    def _claim_size(self) -> int:
        # Under a slow rate limit, claim about ten seconds' worth so no row
        # sits claimed long enough to outlive its lease.
        rate = self.cfg.smtp.rate_per_second
        if rate > 0:
            return max(1, min(self.batch, int(rate * 10)))
        return self.batch

    def _job(self, issue: ledger.IssueRow, template: Personalizer, c: ledger.Claimed) -> _Job:
        message = template.personalize(
            to=c.email,
            unsubscribe_url=self.unsubscribe_url(c.subscriber_id, c.email),
            message_id=self.message_id(issue.id, c.delivery_id),
        )
        return _Job(c, message)

    def _work(self, work: queue.Queue[object], results: queue.Queue[_Result]) -> None:
        transport: Transport | None = None
        try:
            while True:
                item = work.get()
                if item is _STOP:
                    return
                assert isinstance(item, _Job)
                try:
                    if transport is None:
                        transport = self.factory()
                    transport.send(self.sender, item.claimed.email, item.message, wire=self.wire)
                except TransportUnavailable as exc:
                    transport = None
                    results.put(_Result(item, "unavailable", exc))
                    # Do not hammer a server that is down.
                    self.sleep(0.2)
                except DeliveryError as exc:
                    results.put(_Result(item, "failed", exc))
                except Exception as exc:  # a bug must not strand the claim; it is recorded as a failure
                    log.exception("unexpected error sending to delivery %d", item.claimed.delivery_id)
                    results.put(_Result(item, "failed", DeliveryError(f"internal error: {exc!r}")))
                else:
                    results.put(_Result(item, "sent"))
        finally:
            if transport is not None:
                transport.close()

    def _record(self, issue_id: int, done: list[_Result], report: SendReport) -> int:
        now = self.clock()
        sent = [r.job.claimed.delivery_id for r in done if r.outcome == "sent"]
        ledger.mark_sent(self.engine, sent, now=now)
        failures = [
            ledger.Failure(
                r.job.claimed.delivery_id,
                r.job.claimed.subscriber_id,
                str(r.error),
                bool(r.error and r.error.permanent),
                r.job.claimed.attempts,
            )
            for r in done
            if r.outcome == "failed"
        ]
        if failures:
            retrying, failed, bounced = ledger.mark_failed(
                self.engine,
                failures,
                now=now,
                max_attempts=self.cfg.smtp.max_attempts,
                backoff=self.cfg.smtp.retry_backoff,
                bounce_after=self.cfg.smtp.bounce_after,
            )
            report.retrying += retrying
            report.failed += failed
            report.bounced += len(bounced)
            for f in failures:
                log.info("delivery %d failed: %s", f.delivery_id, f.error)
        unavailable = [r.job.claimed.delivery_id for r in done if r.outcome == "unavailable"]
        ledger.release(self.engine, self.worker, unavailable)
        report.sent += len(sent)
        if self.progress is not None and time.monotonic() - self._progress_at >= 0.25:
            self._progress_at = time.monotonic()
            self.progress(ledger.progress(self.engine, issue_id))
        return len(done)


# ------------------------------------------------------------- the public API


def rendered_from_row(issue: ledger.IssueRow) -> RenderedIssue:
    from .newsletter import RenderedIssue

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


def build_template(issue: ledger.IssueRow, cfg: Config, *, sent_at: dt.datetime) -> Personalizer:
    from .newsletter import MessageTemplate

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
) -> SendReport:
    """Send an approved issue (or resume one that is ``sending``) to its audience."""
    now = clock()
    recovered = ledger.recover(engine, now=now, lease=CLAIM_LEASE, issue_id=issue_id)
    issue, created = ledger.start_issue(engine, issue_id, now=now)
    template = build_template(issue, cfg, sent_at=now)
    sender = Sender(cfg, engine, factory=factory, clock=clock, progress=progress)
    try:
        report = sender.run(issue, template, wait=wait)
    except SendAborted as exc:
        exc.report.recovered += recovered
        exc.report.enqueued += created
        raise
    report.recovered += recovered
    report.enqueued += created
    finished = ledger.finish_issue(engine, issue.id, now=clock())
    state = "sent" if finished else "sending"
    report.issues.append(f"{issue.kind}:{issue.key} {state}")
    log.info(
        "issue %s %s: %d sent, %d failed, %d retrying, %d queued (%s) in %.1fs",
        issue.kind, issue.key, report.sent, report.failed, report.retrying, report.queued, state, report.elapsed,
    )
    return report


def drain(cfg: Config, engine: Engine, *, clock: Clock = system_clock) -> SendReport:
    """One scheduler pass: send what is due for every approved or sending issue."""
    total = SendReport()
    for issue in ledger.issues_in_state(engine, ("approved", "sending")):
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
    from .newsletter import MessageTemplate

    to = ledger.normalize_email(address)
    now = clock()
    existing = ledger.find_subscriber(engine, to)
    key = tokens.signing_key(cfg)
    # A test address that is not a subscriber gets a token for id 0, which
    # unsubscribes nobody.
    sid = existing.id if existing else 0
    url = cfg.site.url("unsubscribe?t=" + tokens.make_token(key, "unsubscribe", sid, to))
    template = MessageTemplate.build(issue, cfg, sent_at=now)
    message = template.personalize(
        to=to, unsubscribe_url=url, message_id=make_msgid("test", message_domain(cfg.email.sender_address)), test=True
    )
    _send_one(cfg, to, message)
    log.info("test of %s %s sent to %s", issue.kind, issue.key, to)


def _send_one(cfg: Config, to: str, message: bytes) -> None:
    transport = transport_factory(cfg)()
    try:
        transport.send(cfg.email.sender_address, to, message)
    finally:
        transport.close()


def confirmation_message(cfg: Config, to: str, confirm_url: str, *, now: dt.datetime) -> bytes:
    """The double opt-in email: one link to a page whose button confirms."""
    msg = EmailMessage()
    msg["From"] = formataddr((cfg.email.sender_name, cfg.email.sender_address))
    msg["To"] = to
    msg["Subject"] = f"Confirm your subscription to {cfg.site.title}"
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid("confirm", message_domain(cfg.email.sender_address))
    msg["Auto-Submitted"] = "auto-generated"
    if cfg.email.reply_to:
        msg["Reply-To"] = cfg.email.reply_to
    msg.set_content(
        f"Someone, probably you, asked to receive {cfg.site.title} at {to}.\n\n"
        f"To confirm, open this link and press the button:\n{confirm_url}\n\n"
        "If it was not you, ignore this email: nothing will be sent.\n\n"
        f"-- \n{cfg.email.postal_address}\n"
    )
    from html import escape

    msg.add_alternative(
        "<!doctype html><html><body style=\"font-family:sans-serif\">"
        f"<p>Someone, probably you, asked to receive <b>{escape(cfg.site.title)}</b> at {escape(to)}.</p>"
        f"<p><a href=\"{escape(confirm_url)}\">Confirm your subscription</a></p>"
        "<p>If it was not you, ignore this email: nothing will be sent.</p>"
        f"<p style=\"color:#666;font-size:12px\">{escape(cfg.email.postal_address)}</p>"
        "</body></html>",
        subtype="html",
    )
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def subscribe(cfg: Config, engine: Engine, email: str, cadence: str, *, clock: Clock = system_clock) -> None:
    """Store a pending subscriber and email them a confirmation link.

    Raises :class:`ledger.InvalidAddress` for a bad address. An address that
    is already active gets nothing, so the form cannot be used to spam or
    to learn who subscribes.
    """
    now = clock()
    sub = ledger.request_subscription(engine, email, cadence, now=now)
    if sub is None:
        log.info("subscribe request for an active address ignored")
        return
    key = tokens.signing_key(cfg)
    url = cfg.site.url("confirm?t=" + tokens.make_token(key, "confirm", sub.id, sub.email))
    _send_one(cfg, sub.email, confirmation_message(cfg, sub.email, url, now=now))
    log.info("confirmation sent to subscriber id=%d", sub.id)


def confirm(cfg: Config, engine: Engine, token: str, *, clock: Clock = system_clock) -> bool:
    """Activate the subscriber named by a confirm token; False if nothing changed.

    Raises :class:`TokenError` for a forged, expired or tampered token.
    """
    sid, email = tokens.read_token(tokens.signing_key(cfg), "confirm", token, max_age=CONFIRM_MAX_AGE)
    return ledger.confirm_subscriber(engine, sid, email, now=clock())


def unsubscribe(cfg: Config, engine: Engine, token: str, *, clock: Clock = system_clock) -> bool:
    """Unsubscribe at once (RFC 8058 one-click); False for a replay or a gone subscriber.

    Raises :class:`TokenError` for a forged, truncated or tampered token,
    having changed nothing.
    """
    sid, email = tokens.read_token(tokens.signing_key(cfg), "unsubscribe", token)
    return ledger.unsubscribe_subscriber(engine, sid, email, now=clock())


__all__ = [
    "CONFIRM_MAX_AGE",
    "MaildirTransport",
    "NotFound",
    "RateLimiter",
    "SendAborted",
    "SendReport",
    "Sender",
    "SmtpTransport",
    "StateError",
    "TokenError",
    "TransportUnavailable",
    "confirm",
    "drain",
    "send_issue",
    "send_test",
    "subscribe",
    "unsubscribe",
    "wire_data",
]
