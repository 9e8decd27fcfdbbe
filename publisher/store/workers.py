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

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..core.states import DeliveryState
from .deliveries import LedgerSource, Progress
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
    """``delivery.sender.DeliverySource`` for ``publisher worker``: the ledger, with progress read sparingly.

    Progress (a count over the issue's rows, which the sender asks for four
    times a second) is read at most once per ``progress_every`` seconds: N
    workers counting 1M rows that often would cost more than the claims.
    """

    def __init__(self, engine: Engine, *, progress_every: float = 1.0) -> None:
        super().__init__(engine)
        self.progress_every = progress_every
        self._progress: dict[int, tuple[float, Progress]] = {}

    def progress(self, issue_id: int) -> Progress:
        at, last = self._progress.get(issue_id, (float("-inf"), Progress()))
        if time.monotonic() - at >= self.progress_every:
            last = super().progress(issue_id)
            self._progress[issue_id] = (time.monotonic(), last)
        return last

