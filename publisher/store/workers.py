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

import datetime as dt
import os
import socket
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
    """``delivery.sender.DeliverySource`` for ``publisher worker``: one round trip per batch.

    The ledger's share of a worker's time is round trips more than work: a
    worker's database thread also dispatches messages, and each wait on the
    server hands the GIL to the SMTP threads. So, on PostgreSQL:

    * statements run in autocommit (each is one atomic statement: no
      ``BEGIN``/``COMMIT`` round trips) and psycopg prepares them after a
      few uses, since their text never varies (arrays, not ``IN`` lists);
    * rows accepted since the last claim are *held* and marked ``sent`` by
      the next claim's statement (or by any other call, or once held for
      ``hold`` seconds), with the time of the newest (so ``sent_at`` is
      within ``hold`` of the acceptance). Held rows are still ``sending`` in the ledger, so
      a kill -9 resends them; they are rows the sender already counts as
      recorded, and there are never more of them than one claim plus the
      sender's low water, so a crash's duplicates stay within
      ``Sender.max_in_flight``;
    * progress (a count over the issue's rows, which the sender asks for
      four times a second) is read at most once per ``progress_every``
      seconds: N workers counting 1M rows that often would cost more than
      the claims.
    """

    def __init__(self, engine: Engine, *, progress_every: float = 5.0, hold: float = 1.0) -> None:
        super().__init__(engine)
        self.progress_every = progress_every
        self.hold = hold
        pg = engine.dialect.name == "postgresql"
        # SQLite keeps real transactions: a claim with held marks is two statements there.
        self._auto = engine.execution_options(isolation_level="AUTOCOMMIT") if pg else engine
        self._progress: dict[int, tuple[float, Progress]] = {}
        self._held: list[int] = []
        self._held_at: dt.datetime | None = None  # the newest held acceptance: the batch's sent_at
        self._held_since = 0.0

    def _take_held(self) -> tuple[list[int], dt.datetime | None]:
        held, at = self._held, self._held_at
        self._held, self._held_at = [], None
        return held, at

    def _put_back(self, held: list[int], at: dt.datetime | None) -> None:
        """A statement that failed recorded nothing: its held rows wait for the next try."""
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

    def claim(self, issue_id: int, worker: str, limit: int, *, now: dt.datetime) -> list[Claimed]:
        held, at = self._take_held()
        try:
            return claim(self._auto, issue_id, worker, limit, now=now, sent=held, sent_at=at)
        except BaseException:
            self._put_back(held, at)
            raise

    def mark_sent(self, delivery_ids: Sequence[int], *, now: dt.datetime) -> None:
        if not delivery_ids:
            return
        if not self._held:
            self._held_since = time.monotonic()
        self._held.extend(delivery_ids)
        self._held_at = now
        if time.monotonic() - self._held_since >= self.hold:
            self.flush()

    def mark_failed(
        self, failures: Sequence[Failure], *, now: dt.datetime, max_attempts: int, backoff: float, bounce_after: int,
        jitter: Callable[[], float] | None = None,
    ) -> tuple[int, int, list[int]]:
        self.flush()
        return super().mark_failed(failures, now=now, max_attempts=max_attempts, backoff=backoff,
                                   bounce_after=bounce_after, jitter=jitter)

    def mark_unknown(self, claimed: Sequence[tuple[Claimed, str]], *, now: dt.datetime) -> tuple[int, int]:
        self.flush()
        return super().mark_unknown(claimed, now=now)

    def release(self, worker: str, delivery_ids: Sequence[int] | None = None) -> int:
        if delivery_ids is not None and not delivery_ids:
            return 0  # the sender's "nothing unavailable" after every group: no reason to flush
        self.flush()
        return super().release(worker, delivery_ids)

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
