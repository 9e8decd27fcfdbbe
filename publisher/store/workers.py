"""Delivery workers on a shared store: heartbeats, SKIP LOCKED claims, requeueing the dead.

``publisher worker`` processes on any number of machines drain the same
ledger. Each one keeps a row in ``workers`` and beats it every few seconds;
a row claimed (``sending``) by a worker whose last beat is older than the
lease goes back to the queue, whoever notices first. Liveness is the
heartbeat alone: two containers with the same host name and pid 1 cannot
fool it the way a ``host:pid`` check can.

Claims are :func:`publisher.store.deliveries.claim` (one ``SKIP LOCKED``
statement), the same for workers, the service's drain and ``publisher send``.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..core.states import DeliveryState
from .deliveries import Claimed, Failure, LedgerSource, Progress, mark_sent
from .deliveries import claim as claim  # the one claim, for callers that think in workers
from .engine import upsert
from .schema import deliveries, workers
from .subscribers import utc

log = logging.getLogger(__name__)


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def beat(engine: Engine, worker: str, *, now: dt.datetime, started: dt.datetime | None = None) -> None:
    """Register ``worker`` or prove it alive (an upsert: a row removed as stale comes back)."""
    at = utc(now)
    host, pid = worker.split(":")[0], int(worker.split(":")[1])
    with engine.begin() as conn:
        upsert(conn, workers, {"id": worker, "host": host, "pid": pid, "started_at": utc(started or now), "heartbeat_at": at},
               ["id"], ["heartbeat_at"])


def leave(engine: Engine, worker: str) -> None:
    with engine.begin() as conn:
        conn.execute(workers.delete().where(workers.c.id == worker))


def live_workers(engine: Engine, *, now: dt.datetime, lease: float) -> int:
    cutoff = utc(now) - dt.timedelta(seconds=lease)
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).where(workers.c.heartbeat_at >= cutoff)).scalar_one())


def requeue_dead(engine: Engine, *, now: dt.datetime, lease: float) -> int:
    """Put back in the queue every row claimed by a worker not heard from within ``lease``; how many.

    A claim whose tag matches no live worker row is dead once its worker's
    row is stale, or (a sender that never registered: ``publisher send``,
    the service's drain) once the claim itself is older than the lease.
    """
    cutoff = utc(now) - dt.timedelta(seconds=lease)
    mine = deliveries.c.claimed_by.like(workers.c.id + "#%")
    alive = sa.exists().where(workers.c.heartbeat_at >= cutoff, mine)
    stale = sa.exists().where(workers.c.heartbeat_at < cutoff, mine)
    with engine.begin() as conn:
        back = conn.execute(
            deliveries.update()
            .where(
                deliveries.c.state == DeliveryState.SENDING,
                ~alive,
                sa.or_(stale, deliveries.c.claimed_at.is_(None), deliveries.c.claimed_at < cutoff),
            )
            .values(state=DeliveryState.QUEUED, claimed_by=None, claimed_at=None)
            .returning(deliveries.c.id)
        ).all()
        conn.execute(workers.delete().where(workers.c.heartbeat_at < cutoff))
    return len(back)


def sent_since(engine: Engine, since: dt.datetime) -> int:
    """Messages sent by anyone after ``since`` (the shared hourly window; ix_deliveries_sent_at)."""
    with engine.connect() as conn:
        return int(conn.execute(
            sa.select(sa.func.count()).where(deliveries.c.state == DeliveryState.SENT, deliveries.c.sent_at > utc(since))
        ).scalar_one())


def claimed_by(engine: Engine, worker: str) -> int:
    """Rows ``worker`` holds in ``sending`` now (what a kill -9 would leave to requeue)."""
    with engine.connect() as conn:
        return int(conn.execute(
            sa.select(sa.func.count()).where(
                deliveries.c.state == DeliveryState.SENDING, deliveries.c.claimed_by.like(f"{worker}#%")
            )
        ).scalar_one())


class WorkerSource(LedgerSource):
    """``delivery.sender.DeliverySource`` for ``publisher worker``: one round trip per batch, off the send path.

    The ledger's share of a worker's time is round trips more than work: a
    worker's database thread also dispatches messages, and each wait on the
    server hands the GIL to the SMTP threads. So, on PostgreSQL:

    * statements run in autocommit (each is one atomic statement: no
      ``BEGIN``/``COMMIT`` round trips) and psycopg prepares them after a
      few uses, since their text never varies (arrays, not ``IN`` lists);
    * rows accepted since the last claim are *held* and marked ``sent`` by
      the next claim's statement (or by any other call, or once held for
      ``hold`` seconds), with the time of the newest (so ``sent_at`` is
      within ``hold`` of the acceptance);
    * with ``claim_ahead``, the next claim runs on a thread of its own as
      soon as the rows claimed and not yet recorded drop to that many, so
      the sender finds it done when it runs low instead of waiting on the
      server;
    * progress (a count over the issue's rows, which the sender asks for
      four times a second) is read at most once per ``progress_every``
      seconds: N workers counting 1M rows that often would cost more than
      the claims.

    What a kill -9 can duplicate is what the ledger holds in ``sending``
    for this worker: held rows (the sender counts them recorded) and a claim
    taken ahead are in it. Held rows never outnumber one claim plus the
    sender's low water, and a claim ahead starts only below ``claim_ahead``,
    so the bound is ``claim_ahead`` + one claim (``Worker`` sets it to the
    sender's low water plus a quarter claim: ``Sender.max_in_flight`` + a
    quarter claim). ``release()`` of everything waits for a claim ahead, so
    its rows go back to the queue with the rest.
    """

    def __init__(
        self, engine: Engine, *, progress_every: float = 5.0, hold: float = 1.0, claim_ahead: int = 0,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        super().__init__(engine)
        self.progress_every = progress_every
        self.hold = hold
        self.claim_ahead = claim_ahead
        self.clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        pg = engine.dialect.name == "postgresql"
        # SQLite keeps real transactions: a claim with held marks is two statements there.
        self._auto = engine.execution_options(isolation_level="AUTOCOMMIT") if pg else engine
        self._progress: dict[int, tuple[float, Progress]] = {}
        self._lock = threading.Lock()  # the held rows, shared with the claim-ahead thread
        self._held: list[int] = []
        self._held_at: dt.datetime | None = None  # the newest held acceptance: the batch's sent_at
        self._held_since = 0.0
        self._open = 0  # rows handed to the sender and not yet recorded by it
        self._last: tuple[int, str, int] | None = None  # (issue, worker, limit) of the sender's last claim
        self._ahead: concurrent.futures.Future[list[Claimed]] | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.waited = 0.0  # seconds the sender's thread spent waiting on claims (bench_scale reads it)

    def _take_held(self) -> tuple[list[int], dt.datetime | None]:
        with self._lock:
            held, at = self._held, self._held_at
            self._held, self._held_at = [], None
        return held, at

    def _put_back(self, held: list[int], at: dt.datetime | None) -> None:
        """A statement that failed recorded nothing: its held rows wait for the next try."""
        with self._lock:
            self._held = held + self._held
            self._held_at = self._held_at or at

    def flush(self) -> None:
        """Mark the held rows ``sent`` now."""
        held, at = self._take_held()
        if not held or at is None:
            return
        try:
            mark_sent(self._auto, held, now=at)
        except BaseException:
            self._put_back(held, at)
            raise

    def _claim_now(self, issue_id: int, worker: str, limit: int, now: dt.datetime) -> list[Claimed]:
        held, at = self._take_held()
        try:
            return claim(self._auto, issue_id, worker, limit, now=now, sent=held, sent_at=at)
        except BaseException:
            self._put_back(held, at)
            raise

    def claim(self, issue_id: int, worker: str, limit: int, *, now: dt.datetime) -> list[Claimed]:
        started = time.perf_counter()
        try:
            ahead, self._ahead = self._ahead, None
            key = (issue_id, worker, limit)
            # An empty claim ahead is an answer too: the sender asks again soon (after its last
            # results, or once the worker polls), and that claim runs here and now.
            rows = ahead.result() if ahead is not None else []
            if ahead is None or self._last != key:
                rows += self._claim_now(issue_id, worker, limit, now)
            self._last = key
            self._open += len(rows)
            return rows
        finally:
            self.waited += time.perf_counter() - started

    def _recorded(self, n: int) -> None:
        self._open = max(0, self._open - n)
        if self.claim_ahead and self._ahead is None and self._last is not None and 0 < self._open <= self.claim_ahead:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="claim-ahead")
            issue_id, worker, limit = self._last
            self._ahead = self._pool.submit(self._claim_now, issue_id, worker, limit, self.clock())

    def _settle_ahead(self) -> None:
        """Wait for a claim taken ahead (its rows are this worker's, released with the rest)."""
        ahead, self._ahead = self._ahead, None
        try:
            if ahead is not None:
                ahead.result()
        except Exception as exc:  # noqa: BLE001 - the release below must still run
            # Whatever it took (if anything) is this worker's and goes back with the rest.
            log.warning("claim taken ahead failed: %s", exc)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def mark_sent(self, delivery_ids: Sequence[int], *, now: dt.datetime) -> None:
        if not delivery_ids:
            return
        with self._lock:
            if not self._held:
                self._held_since = time.monotonic()
            self._held.extend(delivery_ids)
            self._held_at = now
            stale = time.monotonic() - self._held_since >= self.hold
        if stale:
            self.flush()
        self._recorded(len(delivery_ids))

    def mark_failed(
        self, failures: Sequence[Failure], *, now: dt.datetime, max_attempts: int, backoff: float, bounce_after: int,
        jitter: Callable[[], float] | None = None,
    ) -> tuple[int, int, list[int]]:
        self.flush()
        result = super().mark_failed(failures, now=now, max_attempts=max_attempts, backoff=backoff,
                                     bounce_after=bounce_after, jitter=jitter)
        self._recorded(len(failures))
        return result

    def mark_unknown(self, claimed: Sequence[tuple[Claimed, str]], *, now: dt.datetime) -> tuple[int, int]:
        self.flush()
        result = super().mark_unknown(claimed, now=now)
        self._recorded(len(claimed))
        return result

    def release(self, worker: str, delivery_ids: Sequence[int] | None = None) -> int:
        if delivery_ids is not None and not delivery_ids:
            return 0  # the sender's "nothing unavailable" after every group: no reason to flush
        if delivery_ids is None:
            self._settle_ahead()
        self.flush()
        released = super().release(worker, delivery_ids)
        if delivery_ids is not None:
            self._recorded(len(delivery_ids))
        return released

    def next_retry(self, issue_id: int) -> dt.datetime | None:
        self.flush()
        return super().next_retry(issue_id)

    def progress(self, issue_id: int) -> Progress:
        at, last = self._progress.get(issue_id, (float("-inf"), Progress()))
        if time.monotonic() - at >= self.progress_every:
            self.flush()
            last = super().progress(issue_id)
            self._progress[issue_id] = (time.monotonic(), last)
        return last
