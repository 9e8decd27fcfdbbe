"""The delivery ledger: one row per (issue, recipient), claimed, marked, recovered.

The ledger is what makes sending resumable: its rows are created before
the first message goes out. Workers *claim* rows (queued → sending) in one
UPDATE, so several workers and processes never take the same row, and mark
a row sent only after the server accepted the message. A worker that dies
leaves its rows in ``sending``; :func:`recover` puts them back in the queue,
which is where the bounded duplicates come from (at most what was claimed
and not yet recorded).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..core.states import DeliveryState, SubscriberStatus
from .bounces import BounceKind, Event, insert_event
from .schema import deliveries, issues, subscribers
from .subscribers import record_bounce, utc

UNKNOWN = "unknown:"  # last_error prefix of a row whose last attempt may have been delivered

log = logging.getLogger(__name__)


def worker_id() -> str:
    """``host:pid:random``: recovery can tell a dead local worker from a live one."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class Claimed:
    delivery_id: int
    subscriber_id: int
    email: str
    attempts: int
    unknown_before: bool = False  # the previous attempt ended "unknown" (may have been delivered)


def _subscriber_column(dialect: str, column: sa.Column[Any]) -> Any:
    """A column of the row's subscriber: the joined table on PostgreSQL, a scalar subquery on SQLite.

    SQLite's RETURNING cannot name a table of ``UPDATE … FROM``, but it can
    hold a correlated scalar subquery, so both backends claim in one statement.
    """
    if dialect == "postgresql":
        return column
    # Aliased: SQLite's RETURNING drops table qualifiers, and "s.id" must still mean the subscriber's.
    s = subscribers.alias("s")
    return sa.select(s.c[column.name]).where(s.c.id == deliveries.c.subscriber_id).scalar_subquery()


_SKIPPED_NOTE = "subscriber no longer active"


@functools.cache
def claim_statement(dialect: str) -> sa.Update:
    """The claim as one statement, built once per dialect (binds: claim_issue, claim_tag, claim_at, claim_n).

    ``UPDATE deliveries … FROM subscribers WHERE id = ANY(ARRAY(SELECT … FOR
    UPDATE SKIP LOCKED LIMIT n)) RETURNING …, subscribers.email``: concurrent
    claimers (workers, the service's drain, ``publisher send``) take
    different rows instead of queueing on the same locks (SQLite has one
    writer at a time and ignores the locking clause). A row whose
    subscriber is no longer active becomes ``skipped`` in the same
    statement, so someone who unsubscribes mid-send gets nothing more.
    """
    at = sa.bindparam("claim_at", type_=deliveries.c.claimed_at.type)
    due = sa.or_(deliveries.c.next_attempt_at.is_(None), deliveries.c.next_attempt_at <= at)
    picked = (
        sa.select(deliveries.c.id)
        .where(deliveries.c.issue_id == sa.bindparam("claim_issue"), deliveries.c.state == DeliveryState.QUEUED.value, due)
        .order_by(deliveries.c.id)
        .limit(sa.bindparam("claim_n"))
        .with_for_update(skip_locked=True)
    )
    active = _subscriber_column(dialect, subscribers.c.status) == SubscriberStatus.ACTIVE.value
    # state='queued' is repeated outside the subquery so that a server that
    # re-checks rows after a lock wait skips rows a concurrent claimer took first.
    where = [deliveries.c.state == DeliveryState.QUEUED.value]
    if dialect == "postgresql":
        # id = ANY(ARRAY(…)): the picked ids are computed once and fetched by primary key. With
        # IN (…) the planner may hash-join the subquery against a scan of the whole ledger.
        where += [deliveries.c.id == sa.any_(sa.func.array(picked.scalar_subquery())),
                  subscribers.c.id == deliveries.c.subscriber_id]
    else:
        where.append(deliveries.c.id.in_(picked.scalar_subquery()))
    return (
        deliveries.update()
        .where(*where)
        .values(
            state=sa.case((active, DeliveryState.SENDING.value), else_=DeliveryState.SKIPPED.value),
            claimed_by=sa.case((active, sa.bindparam("claim_tag", type_=sa.String)), else_=sa.null()),
            claimed_at=at,
            last_error=sa.case((active, deliveries.c.last_error), else_=_SKIPPED_NOTE),
        )
        .returning(
            deliveries.c.id, deliveries.c.subscriber_id, _subscriber_column(dialect, subscribers.c.email).label("email"),
            deliveries.c.state, deliveries.c.attempts, deliveries.c.last_error,
        )
    )


def claim_params(issue_id: int, worker: str, limit: int, now: dt.datetime) -> dict[str, Any]:
    return {"claim_issue": issue_id, "claim_tag": f"{worker}#{uuid.uuid4().hex[:8]}", "claim_at": utc(now), "claim_n": limit}


def claimed_rows(rows: Sequence[Any]) -> list[Claimed]:
    """The claim's RETURNING rows as :class:`Claimed`, in ledger order, the skipped left out."""
    return sorted(
        (
            Claimed(r.id, r.subscriber_id, r.email, r.attempts, (r.last_error or "").startswith(UNKNOWN))
            for r in rows
            if r.state == DeliveryState.SENDING.value
        ),
        key=lambda c: c.delivery_id,
    )


@functools.cache
def _sent_statement(dialect: str) -> sa.Update:
    """Mark rows sent (binds: sent_ids, sent_when). On PostgreSQL ``id = ANY(:array)``: one statement
    text for any number of rows, which psycopg prepares (an ``IN (…)`` list is new text per length)."""
    ids = None
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql  # not imported at start on SQLite (45 ms)

        ids = sa.bindparam("sent_ids", type_=postgresql.ARRAY(sa.Integer))
    where = deliveries.c.id == sa.any_(ids) if ids is not None else deliveries.c.id.in_(sa.bindparam("sent_ids", expanding=True))
    return (
        deliveries.update()
        .where(where)
        .values(state=DeliveryState.SENT.value, sent_at=sa.bindparam("sent_when", type_=deliveries.c.sent_at.type),
                attempts=deliveries.c.attempts + 1, last_error=None, claimed_by=None)
    )


@functools.cache
def _claim_and_mark() -> sa.Update:
    """PostgreSQL: the previous marks and the next claim in one statement (a data-modifying CTE)."""
    return claim_statement("postgresql").add_cte(_sent_statement("postgresql").returning(deliveries.c.id).cte("marked"))


def _mark_sent(conn: sa.Connection, delivery_ids: Sequence[int], at: dt.datetime) -> None:
    if delivery_ids:
        conn.execute(_sent_statement(conn.dialect.name), {"sent_ids": list(delivery_ids), "sent_when": utc(at)})


def claim(
    engine: Engine, issue_id: int, worker: str, limit: int, *, now: dt.datetime,
    sent: Sequence[int] = (), sent_at: dt.datetime | None = None,
) -> list[Claimed]:
    """Take up to ``limit`` due queued rows for this worker, atomically, in one statement (:func:`claim_statement`).

    ``sent``: rows accepted since the last claim (by ``sent_at``), marked
    ``sent`` in the same transaction (on PostgreSQL in the same
    statement), so a worker's steady state is one round trip per batch.
    """
    params = claim_params(issue_id, worker, limit, now)
    marks = {"sent_ids": list(sent), "sent_when": utc(sent_at or now)}
    with engine.begin() as conn:
        if sent and conn.dialect.name == "postgresql":
            rows = conn.execute(_claim_and_mark(), {**params, **marks}).all()
        else:
            _mark_sent(conn, sent, sent_at or now)
            rows = conn.execute(claim_statement(conn.dialect.name), params).all()
    return claimed_rows(rows)


def mark_sent(engine: Engine, delivery_ids: Sequence[int], *, now: dt.datetime) -> None:
    if not delivery_ids:
        return
    with engine.begin() as conn:
        _mark_sent(conn, delivery_ids, now)


@dataclass(frozen=True, slots=True)
class Failure:
    delivery_id: int
    subscriber_id: int
    error: str
    permanent: bool
    attempts: int  # attempts before this one


def mark_failed(
    engine: Engine,
    failures: Sequence[Failure],
    *,
    now: dt.datetime,
    max_attempts: int,
    backoff: float,
    bounce_after: int,
    jitter: Callable[[], float] | None = None,
) -> tuple[int, int, list[int]]:
    """Record failed attempts: ``(retrying, failed, bounced subscriber ids)``.

    A temporary failure goes back to the queue with exponential backoff
    (times ``1 + jitter()``, so a relay's bad minute does not bring every
    row back at the same instant) until ``max_attempts``; a permanent one
    fails the row, records an ``smtp`` hard bounce and counts it against
    the subscriber.
    """
    at = utc(now)
    retrying = failed = 0
    bounced: list[int] = []
    with engine.begin() as conn:
        for f in failures:
            attempts = f.attempts + 1
            values: dict[str, Any] = {"attempts": attempts, "last_error": f.error[:500], "claimed_by": None}
            if f.permanent or attempts >= max_attempts:
                values["state"] = DeliveryState.FAILED
                failed += 1
            else:
                values["state"] = DeliveryState.QUEUED
                spread = 1.0 + (jitter() if jitter is not None else 0.0)
                values["next_attempt_at"] = at + dt.timedelta(seconds=backoff * 2 ** (attempts - 1) * spread)
                retrying += 1
            conn.execute(deliveries.update().where(deliveries.c.id == f.delivery_id).values(**values))
            if f.permanent:
                _record_smtp_bounce(conn, f, at)
                if record_bounce(conn, f.subscriber_id, bounce_after=bounce_after):
                    bounced.append(f.subscriber_id)
    return retrying, failed, bounced


def _record_smtp_bounce(conn: sa.Connection, f: Failure, at: dt.datetime) -> None:
    row = conn.execute(
        sa.select(deliveries.c.issue_id, subscribers.c.email)
        .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
        .where(deliveries.c.id == f.delivery_id)
    ).first()
    if row is not None:
        event = Event(row.email, BounceKind.HARD, "smtp", f.error, f"delivery:{f.delivery_id}", row.issue_id)
        insert_event(conn, event, f.subscriber_id, at=at)


def mark_unknown(engine: Engine, claimed: Sequence[tuple[Claimed, str]], *, now: dt.datetime) -> tuple[int, int]:
    """Record attempts whose outcome is unknown (the connection dropped after the data).

    The first time, the row goes back to the queue at once: a resend, which
    may be a duplicate (counted in the bound). A second unknown in a row is
    presumed delivered (``sent``, the error kept) rather than marked failed:
    the relay has likely accepted it twice already. ``(requeued, presumed sent)``.
    """
    at = utc(now)
    requeued = presumed = 0
    with engine.begin() as conn:
        for c, error in claimed:
            values: dict[str, Any] = {
                "attempts": deliveries.c.attempts + 1, "last_error": (UNKNOWN + " " + error)[:500], "claimed_by": None,
            }
            if c.unknown_before:
                values.update(state=DeliveryState.SENT, sent_at=at)
                presumed += 1
            else:
                values.update(state=DeliveryState.QUEUED, next_attempt_at=None)
                requeued += 1
            conn.execute(deliveries.update().where(deliveries.c.id == c.delivery_id).values(**values))
            issue_id = conn.execute(sa.select(deliveries.c.issue_id).where(deliveries.c.id == c.delivery_id)).scalar()
            event = Event(c.email, BounceKind.UNKNOWN, "smtp", error, f"delivery:{c.delivery_id}:{c.attempts}", issue_id)
            insert_event(conn, event, c.subscriber_id, at=at)
    return requeued, presumed


def set_issue_error(engine: Engine, issue_id: int, error: str | None) -> None:
    """Why the last send of an issue stopped (None clears it once a send gets through)."""
    with engine.begin() as conn:
        conn.execute(issues.update().where(issues.c.id == issue_id).values(error=error[:1000] if error else None))


def release(engine: Engine, worker: str, delivery_ids: Sequence[int] | None = None) -> int:
    """Give claimed rows back to the queue (a clean stop); all of ``worker``'s if no ids."""
    where = [deliveries.c.state == DeliveryState.SENDING, deliveries.c.claimed_by.like(f"{worker}#%")]
    if delivery_ids is not None:
        if not delivery_ids:
            return 0
        where.append(deliveries.c.id.in_(list(delivery_ids)))
    with engine.begin() as conn:
        result = conn.execute(
            deliveries.update().where(*where).values(state=DeliveryState.QUEUED, claimed_by=None, claimed_at=None)
        )
    return max(result.rowcount or 0, 0)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(engine: Engine, *, now: dt.datetime, lease: float, issue_id: int | None = None) -> int:
    """Requeue rows left in ``sending`` by a dead worker.

    A worker on this host whose process is gone is dead at once (so a
    restart after kill -9 resumes immediately); any other claim is presumed
    dead after ``lease`` seconds.
    """
    at = utc(now)
    host = socket.gethostname()
    scope = [deliveries.c.state == DeliveryState.SENDING]
    if issue_id is not None:  # uses the (issue_id, state) index
        scope.append(deliveries.c.issue_id == issue_id)
    with engine.connect() as conn:
        claims = conn.execute(
            sa.select(deliveries.c.claimed_by, sa.func.min(deliveries.c.claimed_at))
            .where(*scope)
            .group_by(deliveries.c.claimed_by)
        ).all()
    dead: list[str] = []
    for tag, claimed_at in claims:
        parts = (tag or "").split("#", 1)[0].split(":")
        local_dead = (
            len(parts) == 3 and parts[0] == host and parts[1].isdigit() and not _pid_alive(int(parts[1]))
        )
        started = claimed_at
        expired = started is None or started < at - dt.timedelta(seconds=lease)
        if local_dead or expired or tag is None:
            dead.append(tag)
    total = 0
    with engine.begin() as conn:
        for tag in dead:
            cond = deliveries.c.claimed_by.is_(None) if tag is None else deliveries.c.claimed_by == tag
            result = conn.execute(
                deliveries.update()
                .where(*scope, cond)
                .values(state=DeliveryState.QUEUED, claimed_by=None, claimed_at=None)
            )
            total += max(result.rowcount or 0, 0)
    if total:
        log.warning("requeued %d deliveries left in flight by dead workers", total)
    return total


@dataclass(frozen=True, slots=True)
class Progress:
    queued: int = 0
    sending: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def total(self) -> int:
        return self.queued + self.sending + self.sent + self.failed + self.skipped

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.skipped


def progress(engine: Engine, issue_id: int) -> Progress:
    with engine.connect() as conn:
        kept = conn.execute(
            sa.select(issues.c.total_sent, issues.c.total_failed, issues.c.total_skipped)
            .where(issues.c.id == issue_id, issues.c.ledger_pruned_at.is_not(None))
        ).first()
        if kept is not None:  # its rows were pruned (or are being): the counts kept on the issue stand
            return Progress(sent=kept.total_sent or 0, failed=kept.total_failed or 0, skipped=kept.total_skipped or 0)
        rows = conn.execute(
            sa.select(deliveries.c.state, sa.func.count())
            .where(deliveries.c.issue_id == issue_id)
            .group_by(deliveries.c.state)
        ).all()
    counts = {state: n for state, n in rows if state in {s.value for s in DeliveryState}}
    return Progress(**counts)


def next_retry(engine: Engine, issue_id: int) -> dt.datetime | None:
    """When the earliest queued row becomes due (None: nothing queued)."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(sa.func.count(), sa.func.min(deliveries.c.next_attempt_at)).where(
                deliveries.c.issue_id == issue_id, deliveries.c.state == DeliveryState.QUEUED
            )
        ).one()
    if not row[0]:
        return None
    return row[1] or dt.datetime.min.replace(tzinfo=dt.timezone.utc)


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    email: str
    state: str
    attempts: int
    last_error: str | None
    sent_at: dt.datetime | None


def failures(engine: Engine, issue_id: int, *, limit: int = 50) -> list[DeliveryRow]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                subscribers.c.email,
                deliveries.c.state,
                deliveries.c.attempts,
                deliveries.c.last_error,
                deliveries.c.sent_at,
            )
            .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
            .where(deliveries.c.issue_id == issue_id, deliveries.c.state == DeliveryState.FAILED)
            .order_by(deliveries.c.id)
            .limit(limit)
        ).all()
    return [DeliveryRow(r.email, r.state, r.attempts, r.last_error, r.sent_at) for r in rows]


def sent_since(engine: Engine, since: dt.datetime) -> list[dt.datetime]:
    """Send times after ``since`` across all issues (seeds the hourly rate window)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(deliveries.c.sent_at)
            .where(deliveries.c.state == DeliveryState.SENT, deliveries.c.sent_at > utc(since))
            .order_by(deliveries.c.sent_at)
        ).scalars()
        return [t for t in (r for r in rows) if t is not None]


class LedgerSource:
    """The ledger as the sender sees it (``delivery.sender.DeliverySource``), over one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def claim(self, issue_id: int, worker: str, limit: int, *, now: dt.datetime) -> list[Claimed]:
        return claim(self.engine, issue_id, worker, limit, now=now)

    def mark_sent(self, delivery_ids: Sequence[int], *, now: dt.datetime) -> None:
        mark_sent(self.engine, delivery_ids, now=now)

    def mark_failed(
        self, failures: Sequence[Failure], *, now: dt.datetime, max_attempts: int, backoff: float, bounce_after: int,
        jitter: Callable[[], float] | None = None,
    ) -> tuple[int, int, list[int]]:
        return mark_failed(
            self.engine, failures, now=now, max_attempts=max_attempts, backoff=backoff, bounce_after=bounce_after, jitter=jitter
        )

    def release(self, worker: str, delivery_ids: Sequence[int] | None = None) -> int:
        return release(self.engine, worker, delivery_ids)

    def mark_unknown(self, claimed: Sequence[tuple[Claimed, str]], *, now: dt.datetime) -> tuple[int, int]:
        return mark_unknown(self.engine, claimed, now=now)

    def progress(self, issue_id: int) -> Progress:
        return progress(self.engine, issue_id)

    def next_retry(self, issue_id: int) -> dt.datetime | None:
        return next_retry(self.engine, issue_id)
