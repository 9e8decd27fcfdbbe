"""Delivery workers on a shared store: heartbeats, SKIP LOCKED claims, requeueing the dead.

``publisher worker`` processes on any number of machines drain the same
ledger. Each one keeps a row in ``workers`` and beats it every few seconds;
a row claimed (``sending``) by a worker whose last beat is older than the
lease goes back to the queue, whoever notices first. Liveness is the
heartbeat alone: two containers with the same host name and pid 1 cannot
fool it the way a ``host:pid`` check can.

Claims are one statement: ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP
LOCKED LIMIT n) RETURNING``. On PostgreSQL concurrent claimers each take
different rows instead of queueing on the same locks; SQLite has one writer
at a time and ignores the locking clause, which is the single-writer path.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
import uuid

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..core.states import DeliveryState, SubscriberStatus
from .deliveries import Claimed, LedgerSource, Progress
from .engine import upsert
from .schema import deliveries, subscribers, workers
from .subscribers import utc


def claim(engine: Engine, issue_id: int, worker: str, limit: int, *, now: dt.datetime) -> list[Claimed]:
    """Take up to ``limit`` due queued rows, skipping rows another transaction holds."""
    at = utc(now)
    tag = f"{worker}#{uuid.uuid4().hex[:8]}"
    due = sa.or_(deliveries.c.next_attempt_at.is_(None), deliveries.c.next_attempt_at <= at)
    picked = (
        sa.select(deliveries.c.id)
        .where(deliveries.c.issue_id == issue_id, deliveries.c.state == DeliveryState.QUEUED, due)
        .order_by(deliveries.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    with engine.begin() as conn:
        taken = conn.execute(
            deliveries.update()
            .where(deliveries.c.id.in_(picked), deliveries.c.state == DeliveryState.QUEUED)
            .values(state=DeliveryState.SENDING, claimed_by=tag, claimed_at=at)
            .returning(deliveries.c.id, deliveries.c.subscriber_id, deliveries.c.attempts)
        ).all()
        if not taken:
            return []
        # SQLite's RETURNING cannot name a joined table: the addresses come in a second read.
        who = {
            r.id: (r.email, r.status)
            for r in conn.execute(
                sa.select(subscribers.c.id, subscribers.c.email, subscribers.c.status)
                .where(subscribers.c.id.in_([r.subscriber_id for r in taken]))
            )
        }
        gone = [r.id for r in taken if who[r.subscriber_id][1] != SubscriberStatus.ACTIVE]
        if gone:
            conn.execute(
                deliveries.update()
                .where(deliveries.c.id.in_(gone))
                .values(state=DeliveryState.SKIPPED, last_error="subscriber no longer active", claimed_by=None)
            )
    skipped = set(gone)
    return sorted(
        (Claimed(r.id, r.subscriber_id, who[r.subscriber_id][0], r.attempts) for r in taken if r.id not in skipped),
        key=lambda c: c.delivery_id,
    )


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
    """``delivery.sender.DeliverySource`` for ``publisher worker``: the ledger with SKIP LOCKED claims.

    Progress (a count over the issue's rows, which the sender asks for four
    times a second) is read at most once per ``progress_every`` seconds: N
    workers counting 1M rows that often would cost more than the claims.
    """

    def __init__(self, engine: Engine, *, progress_every: float = 1.0) -> None:
        super().__init__(engine)
        self.progress_every = progress_every
        self._progress: dict[int, tuple[float, Progress]] = {}

    def claim(self, issue_id: int, worker: str, limit: int, *, now: dt.datetime) -> list[Claimed]:
        return claim(self.engine, issue_id, worker, limit, now=now)

    def progress(self, issue_id: int) -> Progress:
        at, last = self._progress.get(issue_id, (float("-inf"), Progress()))
        if time.monotonic() - at >= self.progress_every:
            last = super().progress(issue_id)
            self._progress[issue_id] = (time.monotonic(), last)
        return last

