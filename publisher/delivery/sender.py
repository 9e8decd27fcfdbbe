"""The sender: drains one issue's ledger rows through a pool of transport workers.

Shape of a send: the calling thread is the only one that talks to the
database. It claims a batch of ledger rows, paces them through the rate
limiter into a small work queue, and N worker threads (one connection
each, reused) hand messages to the transport. Each accepted message comes
back on a results queue and is recorded ``sent`` in small groups. What a
kill -9 can duplicate is therefore bounded by the rows claimed and not yet
recorded (:attr:`Sender.max_in_flight`).

The sender reads and writes the ledger only through a
:class:`DeliverySource` (as listmonk's manager depends on a DataSource), so
the claim strategy can change inside the store alone.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import hashlib
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ..core.clock import Clock, system_clock
from ..core.config import Config
from ..core.errors import DeliveryError, PublisherError
from ..mail import tokens
from ..mail.message import Personalizer, message_domain
from ..mail.dkim import Signer, signer_for
from ..mail.transports import (
    DeliveryUnknown, SenderRefused, SmtpTransport, Transport, TransportFactory, TransportUnavailable, connections,
    transport_factory,
)
from ..mail.wire import WireMessage
from ..store.deliveries import Claimed, Failure, LedgerSource, Progress, worker_id
from ..store.engine import Engine
from ..store.issues import IssueRow
from .ratelimit import RateLimiter, limiter_for
from .verp import verp_address

log = logging.getLogger(__name__)


class DeliverySource(Protocol):
    """What the sender needs of the ledger (``store.deliveries.LedgerSource`` is the real one)."""

    def claim(self, issue_id: int, worker: str, limit: int, *, now: dt.datetime) -> list[Claimed]: ...
    def mark_sent(self, delivery_ids: Sequence[int], *, now: dt.datetime) -> None: ...
    def mark_failed(
        self, failures: Sequence[Failure], *, now: dt.datetime, max_attempts: int, backoff: float, bounce_after: int,
        jitter: Callable[[], float] | None = None,
    ) -> tuple[int, int, list[int]]: ...
    def mark_unknown(self, claimed: Sequence[tuple[Claimed, str]], *, now: dt.datetime) -> tuple[int, int]: ...
    def release(self, worker: str, delivery_ids: Sequence[int] | None = None) -> int: ...
    def progress(self, issue_id: int) -> Progress: ...
    def next_retry(self, issue_id: int) -> dt.datetime | None: ...


class SendAborted(PublisherError):
    """A send stopped before its end; the ledger keeps the rest queued for the next run."""

    def __init__(self, issue_key: str, message: str, report: SendReport, *, refused: bool = False) -> None:
        self.issue_key = issue_key
        self.report = report
        self.refused = refused  # the relay refused the sender or the message (not an outage)
        self.reason = message
        super().__init__(f"{issue_key}: {message}")



@dataclass
class SendReport:
    sent: int = 0
    failed: int = 0  # permanently, or out of attempts
    retrying: int = 0  # temporary failures put back with backoff
    skipped: int = 0  # rows of the issue whose subscriber left before their turn (issue total)
    bounced: int = 0  # subscribers newly marked bounced
    recovered: int = 0  # rows taken back from dead workers
    unknown: int = 0  # attempts whose connection dropped after the data (may be delivered; resent once)
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


ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True, slots=True)
class _Job:
    claimed: Claimed
    message: bytes
    sender: str = ""  # the envelope sender (a VERP return path), else the configured sender


@dataclass(frozen=True, slots=True)
class _Result:
    job: _Job
    # "unsent": never tried (the rest of a hand-off after a refusal or an outage): back to the queue.
    outcome: Literal["sent", "failed", "unavailable", "refused", "unknown", "unsent"]
    error: DeliveryError | None = None


_STOP = object()


@dataclass
class _Run:
    """The state of one :meth:`Sender.run`."""

    issue: IssueRow
    template: Personalizer
    wait: bool
    work: queue.Queue[object]  # lists of jobs (a hand-off), or _STOP
    results: queue.Queue[list[_Result]]
    report: SendReport = field(default_factory=SendReport)
    pending: collections.deque[Claimed] = field(default_factory=collections.deque)
    staged: list[_Job] = field(default_factory=list)  # a hand-off built, waiting for room in the work queue
    outstanding: int = 0  # claimed and not yet recorded
    unrecorded: list[_Result] = field(default_factory=list)
    unavailable_streak: int = 0
    stop: threading.Event = field(default_factory=threading.Event)  # a refusal: workers start no more messages
    abort: DeliveryError | None = None
    refused: DeliveryError | None = None  # a 5xx at MAIL FROM, DATA or after the data: stop at once


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
        source: DeliverySource | None = None,
    ) -> None:
        self.cfg = cfg
        self.source: DeliverySource = source or LedgerSource(engine)
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
        # Messages per hand-off to a worker: enough to amortise the switch, few
        # enough that every connection has work from one claim.
        self._handoff = max(1, min(16, self.batch // (2 * self.n)))
        self.worker = worker_id()
        self.key = tokens.signing_key(cfg)
        self.links = tokens.LinkMaker(self.key, "unsubscribe", cfg.site.url("unsubscribe?t="))
        self.sender = cfg.email.sender_address
        self.signer: Signer | None = signer_for(cfg)  # parsed once per send
        self._domain = message_domain(cfg.email.sender_address)
        self._mid_hash = hashlib.sha256(f"{self._domain}:".encode())  # the constant start of every Message-ID hash
        self._progress_at = 0.0

    @property
    def max_in_flight(self) -> int:
        """Most rows claimed and not yet recorded at any moment: what a crash can duplicate.
        Each "unknown" outcome (a drop after the data) adds at most one more copy: it is resent once."""
        return self.batch + max(self.batch // 2, self.n * 2)

    def message_id(self, issue_id: int, delivery_id: int) -> str:
        # Stable per delivery: a resend after a crash carries the same
        # Message-ID, so receiving systems can drop the duplicate.
        h = self._mid_hash.copy()
        h.update(f"{issue_id}:{delivery_id}".encode())
        digest = h.hexdigest()[:12]
        return f"<{issue_id}.{delivery_id}.{digest}@{self._domain}>"

    def unsubscribe_url(self, subscriber_id: int, email: str) -> str:
        return self.links.url(subscriber_id, email)

    def run(self, issue: IssueRow, template: Personalizer, *, wait: bool = True) -> SendReport:
        """Send every due queued row of ``issue``.

        ``wait``: keep going until nothing is queued (sleeping for retries);
        otherwise return once no row is due (the scheduler comes back).
        Raises :class:`SendAborted` when the server is unreachable, leaving
        the unsent rows queued.
        """
        started = time.monotonic()
        if self.wire:
            # Compiled once: per reader only joins (and the signature) remain.
            template = WireMessage(template, self.signer)
        run = _Run(issue, template, wait, queue.Queue(maxsize=self.n * 2), queue.Queue())
        threads = [
            threading.Thread(target=self._work, args=(run.work, run.results, run.stop), name=f"send-{i}", daemon=True)
            for i in range(self.n)
        ]
        for t in threads:
            t.start()
        try:
            while self._step(run):
                pass
        finally:
            self._wind_down(run, threads)
            run.report.elapsed = time.monotonic() - started
        left = self.source.progress(issue.id)
        run.report.queued = left.queued
        run.report.skipped = left.skipped
        if self.progress is not None:
            self.progress(left)
        if run.refused is not None:
            raise SendAborted(
                issue.key, f"the relay refused the send ({run.refused}); nobody was marked bounced, "
                f"{left.queued} left queued", run.report, refused=True,
            )
        if run.abort is not None and self._server_down(run):
            raise SendAborted(issue.key, f"transport unavailable, {left.queued} left queued: {run.abort}", run.report)
        return run.report

    def _server_down(self, run: _Run) -> bool:
        return run.unavailable_streak >= self.n * 2

    def _step(self, run: _Run) -> bool:
        """One turn of the loop: record what finished, then dispatch or claim. False: stop."""
        self._collect(run)
        if self._server_down(run) or run.refused is not None:
            return False
        if run.pending or run.staged:
            self._dispatch(run)
            return True
        if run.outstanding <= max(self.batch // 2, self.n * 2):  # low water: claim more
            return self._refill(run)
        return True

    def _collect(self, run: _Run) -> None:
        """Take the workers' results; record them in groups (and whenever nothing else is pending)."""
        block = run.outstanding > 0 and not run.pending and not run.staged
        new: list[_Result] = []
        try:
            new.extend(run.results.get(timeout=0.05) if block else run.results.get_nowait())
            while True:
                new.extend(run.results.get_nowait())
        except queue.Empty:
            pass
        for r in new:
            if r.outcome == "unavailable":
                run.unavailable_streak += 1
                run.abort = r.error
            elif r.outcome == "refused":
                run.refused = r.error
            elif r.outcome == "sent":
                run.unavailable_streak = 0
        run.unrecorded.extend(new)
        if run.unrecorded and (
            len(run.unrecorded) >= self.record_every or not run.pending or run.outstanding == len(run.unrecorded)
        ):
            run.outstanding -= self._record(run.issue.id, run.unrecorded, run.report)
            run.unrecorded = []

    def _dispatch(self, run: _Run) -> None:
        """Hand the next claimed rows to a worker, paced by the rate limit.

        Unpaced, a hand-off holds several messages (fewer thread switches, and
        the transport pipelines one message's data with the next envelope);
        under a rate limit it holds one, as each waits for its slot.
        """
        if not run.staged:
            delay = self.limiter.delay()
            if delay > 0:
                self.sleep(min(delay, 0.05))
                return
            while run.pending and len(run.staged) < self._handoff:
                claimed = run.pending.popleft()
                try:
                    run.staged.append(self._job(run.issue, run.template, claimed))
                except DeliveryError as exc:
                    # personalize refused this recipient (an address that could
                    # inject headers): fail it, go on.
                    run.unrecorded.append(_Result(_Job(claimed, b""), "failed", exc))
                    continue
                self.limiter.reserve()
                if self.limiter.delay() > 0:
                    break
            if not run.staged:
                return
        try:
            run.work.put(run.staged, timeout=0.05)
        except queue.Full:
            return
        run.staged = []

    def _refill(self, run: _Run) -> bool:
        """Claim more rows when the pipeline runs low; False when the send is over for now."""
        # Claim only what can go out soon: a row held in "sending" while we
        # sleep on the hourly limit would be a needless duplicate if this
        # process died.
        delay = self.limiter.delay()
        if delay > 1.0:
            if run.outstanding:
                return True
            if not run.wait:
                return False
            self.sleep(min(delay, 5.0))
            return True
        claimed = self.source.claim(run.issue.id, self.worker, self._claim_size(), now=self.clock())
        if claimed:
            run.pending.extend(claimed)
            run.outstanding += len(claimed)
            return True
        if run.outstanding:
            return True
        due = self.source.next_retry(run.issue.id)
        if due is None or not run.wait:
            return False
        self.sleep(min(max((due - self.clock()).total_seconds(), 0.01), 5.0))
        return True

    def _wind_down(self, run: _Run, threads: list[threading.Thread]) -> None:
        """Stop the workers, record what they finished, give back what was claimed and not sent."""
        if run.refused is not None or self._server_down(run):
            # Nothing more goes out after a refusal: queued jobs stay claimed
            # until the release below puts them back.
            while True:
                try:
                    run.work.get_nowait()
                except queue.Empty:
                    break
        for _ in threads:
            run.work.put(_STOP)
        for t in threads:
            t.join()
        while True:
            try:
                run.unrecorded.extend(run.results.get_nowait())
            except queue.Empty:
                break
        if run.unrecorded:
            self._record(run.issue.id, run.unrecorded, run.report)
        released = self.source.release(self.worker)
        if released:
            log.info("issue %s: %d claimed deliveries returned to the queue", run.issue.key, released)

    def _claim_size(self) -> int:
        # Under a slow rate limit, claim about ten seconds' worth so no row
        # sits claimed long enough to outlive its lease.
        rate = self.cfg.smtp.rate_per_second
        if rate > 0:
            return max(1, min(self.batch, int(rate * 10)))
        return self.batch

    def _job(self, issue: IssueRow, template: Personalizer, c: Claimed) -> _Job:
        to, url, mid = c.email, self.links.url(c.subscriber_id, c.email), self.message_id(issue.id, c.delivery_id)
        message = template.personalize(to=to, unsubscribe_url=url, message_id=mid)
        if self.signer is not None and not isinstance(template, WireMessage):  # a WireMessage signs its payloads
            message = self.signer.sign(message)
        return _Job(c, message, verp_address(self.cfg, self.key, issue.id, c.subscriber_id) or self.sender)

    def _work(self, work: queue.Queue[object], results: queue.Queue[list[_Result]], stop: threading.Event) -> None:
        transport: Transport | None = None
        try:
            while True:
                item = work.get()
                if item is _STOP:
                    return
                assert isinstance(item, list)
                done: list[_Result] = []
                try:
                    if transport is None:
                        transport = self.factory()
                    self._hand_over(transport, item, done, stop)
                except TransportUnavailable as exc:
                    transport = None
                    done.append(_Result(item[len(done)], "unavailable", exc))
                    # Do not hammer a server that is down.
                    self.sleep(0.2)
                except Exception as exc:  # a bug must not strand the claim; it is recorded as a failure
                    job = item[len(done)]
                    log.exception("unexpected error sending to delivery %d", job.claimed.delivery_id)
                    done.append(_Result(job, "failed", DeliveryError(f"internal error: {exc!r}")))
                # Whatever was not tried goes back to the queue, no attempt counted.
                done.extend(_Result(j, "unsent") for j in item[len(done):])
                results.put(done)
        finally:
            if transport is not None:
                transport.close()

    def _hand_over(self, transport: Transport, jobs: list[_Job], done: list[_Result], stop: threading.Event) -> None:
        """Send ``jobs`` in order, appending one result each; stop after a refusal (here or on
        another connection) or an outage."""
        if isinstance(transport, SmtpTransport) and self.wire:
            items = [(j.sender or self.sender, j.claimed.email, j.message) for j in jobs]
            for job, error in zip(jobs, transport.send_all(items, stop=stop.is_set)):
                if isinstance(error, TransportUnavailable):
                    raise error
                if isinstance(error, SenderRefused):
                    stop.set()
                done.append(_outcome(job, error))
            return
        for job in jobs:
            if stop.is_set():
                return
            try:
                transport.send(job.sender or self.sender, job.claimed.email, job.message, wire=self.wire)
            except TransportUnavailable:
                raise
            except DeliveryError as exc:
                done.append(_outcome(job, exc))
                if isinstance(exc, SenderRefused):
                    stop.set()
                    return
            else:
                done.append(_Result(job, "sent"))

    def _record(self, issue_id: int, done: list[_Result], report: SendReport) -> int:
        now = self.clock()
        sent = [r.job.claimed.delivery_id for r in done if r.outcome == "sent"]
        self.source.mark_sent(sent, now=now)
        failures = [
            Failure(
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
            retrying, failed, bounced = self.source.mark_failed(
                failures,
                now=now,
                max_attempts=self.cfg.smtp.max_attempts,
                backoff=self.cfg.smtp.retry_backoff,
                bounce_after=self.cfg.smtp.bounce_after,
                jitter=lambda: random.uniform(0.0, 0.5),
            )
            report.retrying += retrying
            report.failed += failed
            report.bounced += len(bounced)
            for f in failures:
                log.info("delivery %d failed: %s", f.delivery_id, f.error)
        unknown = [(r.job.claimed, str(r.error)) for r in done if r.outcome == "unknown"]
        if unknown:
            _requeued, presumed = self.source.mark_unknown(unknown, now=now)
            report.unknown += len(unknown)
            report.sent += presumed
            for c, error in unknown:
                log.warning("delivery %d outcome unknown (%s); %s", c.delivery_id, error,
                            "presumed delivered" if c.unknown_before else "resending once")
        # An outage or a refused sender is nobody's fault: no attempt counted.
        unavailable = [r.job.claimed.delivery_id for r in done if r.outcome in ("unavailable", "refused", "unsent")]
        self.source.release(self.worker, unavailable)
        report.sent += len(sent)
        if self.progress is not None and time.monotonic() - self._progress_at >= 0.25:
            self._progress_at = time.monotonic()
            self.progress(self.source.progress(issue_id))
        return len(done)


def _outcome(job: _Job, error: DeliveryError | None) -> _Result:
    if error is None:
        return _Result(job, "sent")
    if isinstance(error, SenderRefused):
        return _Result(job, "refused", error)
    if isinstance(error, DeliveryUnknown):
        return _Result(job, "unknown", error)
    return _Result(job, "failed", error)
