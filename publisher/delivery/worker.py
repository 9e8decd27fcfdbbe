"""``publisher worker``: one of N processes draining the ledger of a shared store.

Each worker starts due issues (``start_issue`` locks the issue row, so only
one creates the ledger rows), then drains them through the unchanged
:class:`~publisher.delivery.sender.Sender` over a
:class:`~publisher.store.workers.WorkerSource` (SKIP LOCKED claims). A
heartbeat thread beats the worker's row, requeues rows held by workers
that stopped beating, and re-divides the shared rate limits.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..core.clock import Clock, system_clock
from ..core.config import Config
from ..core.errors import PublisherError, StateError
from ..core.states import IssueState
from ..mail.transports import TransportFactory
from ..store import issues as issues_store
from ..store import workers as workers_store
from ..store.deliveries import Progress
from ..store.engine import Engine
from .ratelimit import RateLimiter
from .send import build_template
from .sender import SendAborted, Sender, SendReport

log = logging.getLogger(__name__)

Echo = Callable[[str], None]


class SharedRateLimiter(RateLimiter):
    """The configured limits divided among the live workers, through the store.

    Per second: each worker spaces its messages at ``rate / live workers``.
    Per hour: the ledger's sent rows of the last hour are counted at every
    heartbeat; each worker may send its share of what is left until the next
    count, so N workers together stay under the limit (give or take what is
    in flight between two counts).
    """

    def __init__(self, per_second: float, per_hour: int) -> None:
        super().__init__(per_second, 0)
        self.total_per_second = per_second
        self.hourly = per_hour
        self._allowance: float = float(per_hour) if per_hour else float("inf")

    def refresh(self, live: int, sent_last_hour: int) -> None:
        live = max(1, live)
        with self._lock:
            self.per_second = self.total_per_second / live if self.total_per_second else 0.0
            if self.hourly:
                self._allowance = max(0, self.hourly - sent_last_hour) / live

    def delay(self) -> float:
        with self._lock:
            if self._allowance < 1:
                return 5.0  # wait for the next count
        return super().delay()

    def reserve(self) -> float:
        with self._lock:
            self._allowance -= 1
        return super().reserve()


@dataclass
class WorkerReport:
    worker: str
    sent: int = 0
    failed: int = 0
    retrying: int = 0
    requeued: int = 0  # rows taken back from dead workers by this one
    issues: int = 0
    elapsed: float = 0.0

    def line(self) -> str:
        return (f"worker {self.worker}: {self.sent} sent, {self.failed} failed, {self.retrying} retrying, "
                f"{self.requeued} requeued from dead workers, {self.issues} issue(s), {self.elapsed:.1f}s")


class Worker:
    """Drains every due issue until stopped (or, with ``until_idle``, until nothing is left)."""

    def __init__(
        self, cfg: Config, engine: Engine, *, clock: Clock = system_clock, echo: Echo | None = None,
        factory: TransportFactory | None = None, poll: float = 1.0,
    ) -> None:
        self.cfg = cfg
        self.engine = engine
        self.clock = clock
        self.echo = echo
        self.factory = factory
        self.poll = poll
        self.lease = cfg.delivery.lease
        self.id = workers_store.new_worker_id()
        self.limiter = SharedRateLimiter(cfg.smtp.rate_per_second, cfg.smtp.rate_per_hour)
        self.stop = threading.Event()
        self.report = WorkerReport(self.id)
        self._last_line = 0.0

    def _beat(self) -> None:
        now = self.clock()
        workers_store.beat(self.engine, self.id, now=now)
        back = workers_store.requeue_dead(self.engine, now=now, lease=self.lease)
        if back:
            self.report.requeued += back
            log.warning("worker %s: requeued %d deliveries left by dead workers", self.id, back)
        sent = workers_store.sent_since(self.engine, now - dt.timedelta(hours=1)) if self.cfg.smtp.rate_per_hour else 0
        self.limiter.refresh(workers_store.live_workers(self.engine, now=now, lease=self.lease), sent)

    def _heartbeats(self) -> None:
        interval = max(0.2, min(self.lease / 4, 5.0))
        while not self.stop.wait(interval):
            try:
                self._beat()
            except PublisherError as exc:
                log.error("worker %s: heartbeat failed: %s", self.id, exc)

    def _progress(self, label: str) -> Callable[[Progress], None]:
        def show(p: Progress) -> None:
            if self.echo is not None and time.monotonic() - self._last_line >= 1.0:
                self._last_line = time.monotonic()
                self.echo(f"{label}: {p.sent}/{p.total} sent, {p.queued} queued, {p.sending} in flight, {p.failed} failed")
        return show

    def _drain(self, issue_id: int) -> None:
        """Start the issue if it is due (idempotent), send what is due of it, finish it when done."""
        try:
            issue, _created = issues_store.start_issue(self.engine, issue_id, now=self.clock(), actor=f"worker {self.id}")
        except StateError as exc:  # another worker finished it, or an editor held it meanwhile
            log.debug("%s", exc)
            return
        if issue.state is not IssueState.SENDING:
            return
        # Results reach the source in groups of an eighth of a claim: a mark only joins the held
        # rows (no statement), and small groups let the claim ahead start in time.
        source = workers_store.WorkerSource(self.engine, clock=self.clock)
        sender = Sender(self.cfg, self.engine, factory=self.factory, limiter=self.limiter, clock=self.clock,
                        progress=self._progress(issue.label), source=source,
                        record_every=max(10, self.cfg.smtp.batch_size // 8))
        sender.worker = self.id  # claims carry the id the heartbeat row proves alive
        # The next claim starts a quarter claim before the sender runs low (its low water is
        # max_in_flight - batch), so it is done when asked for: a crash may then duplicate a
        # quarter claim more than Sender.max_in_flight.
        source.claim_ahead = sender.max_in_flight - sender.batch + sender.batch // 4
        report: SendReport = sender.run(issue, build_template(issue, self.cfg, sent_at=self.clock()), wait=False)
        self.report.sent += report.sent
        self.report.failed += report.failed
        self.report.retrying += report.retrying
        if issues_store.finish_issue(self.engine, issue.id, now=self.clock()):
            self.report.issues += 1
            if self.echo is not None:
                self.echo(f"{issue.label}: sent")

    def run(self, *, until_idle: bool = False) -> WorkerReport:
        started = time.monotonic()
        self._beat()
        beats = threading.Thread(target=self._heartbeats, name="worker-heartbeat", daemon=True)
        beats.start()
        try:
            while not self.stop.is_set():
                due = issues_store.due_issues(self.engine, now=self.clock())
                done_before = self.report.sent + self.report.failed + self.report.issues
                for issue in due:
                    if self.stop.is_set():
                        break
                    try:
                        self._drain(issue.id)
                    except SendAborted as exc:
                        log.warning("%s", exc)
                        break  # the relay is down for every issue alike
                if until_idle and not due:
                    break
                # A pass that got something done looks again at once (the issue it finished, the
                # next one due); one that found only rows in flight elsewhere or backing off waits.
                if self.report.sent + self.report.failed + self.report.issues == done_before:
                    self.stop.wait(self.poll)
        finally:
            self.stop.set()
            beats.join(timeout=10)
            workers_store.leave(self.engine, self.id)
            self.report.elapsed = time.monotonic() - started
        return self.report
