"""Subscriber and delivery queries over the ``subscribers`` and ``deliveries`` tables.

The delivery ledger is what makes sending resumable: one row per (issue,
recipient), created before the first message goes out. Workers *claim* rows
(queued → sending) in one UPDATE, so several workers and processes never
take the same row, and mark a row sent only after the server accepted the
message. A worker that dies leaves its rows in ``sending``; :func:`recover`
puts them back in the queue, which is where the bounded duplicates come
from (at most what was claimed and not yet recorded).

Every timestamp is stored in UTC; SQLite keeps no zone, so rows read back
naive are UTC by construction.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import socket
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.engine import Connection, Engine

from .errors import NotFound, PublisherError, StateError
from .store import deliveries, issues, subscribers

log = logging.getLogger(__name__)

SubscriberStatus = Literal["pending", "active", "unsubscribed", "bounced"]
Cadence = Literal["instant", "daily", "weekly"]
STATUSES: tuple[str, ...] = ("pending", "active", "unsubscribed", "bounced")
CADENCES: tuple[str, ...] = ("instant", "daily", "weekly")
# queued → sending → sent | failed | queued (retry); skipped = the subscriber
# left (unsubscribed, bounced, removed) before their turn came.
DELIVERY_STATES: tuple[str, ...] = ("queued", "sending", "sent", "failed", "skipped")
MAX_EMAIL = 254  # RFC 5321 path limit


class InvalidAddress(PublisherError):
    """An email address that fails validation; carries the address as given."""

    def __init__(self, address: str, message: str) -> None:
        self.address = address
        super().__init__(f"{address!r}: {message}")


def normalize_email(raw: str) -> str:
    """The canonical form of an address, or :class:`InvalidAddress`.

    Syntax only (no DNS: imports must not depend on the network). The whole
    address is lower-cased: every real mailbox provider treats the local part
    case-insensitively, and two rows for one person mean double sends.
    """
    text = raw.strip()
    if not text or len(text) > MAX_EMAIL or any(c in text for c in "\r\n\0<>,;"):
        raise InvalidAddress(raw, "not a single email address")
    try:
        info = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(raw, str(exc)) from exc
    return info.normalized.lower()


def check_cadence(value: str) -> str:
    cadence = value.strip().lower()
    if cadence not in CADENCES:
        raise PublisherError(f"cadence {value!r}: expected one of {', '.join(CADENCES)}")
    return cadence


def utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime passed to the ledger")
    return value.astimezone(dt.timezone.utc)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


# ---------------------------------------------------------------- subscribers


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: int
    email: str
    status: str
    cadence: str
    bounces: int
    created_at: dt.datetime
    confirmed_at: dt.datetime | None
    unsubscribed_at: dt.datetime | None


def _subscriber(row: Any) -> Subscriber:
    created = _aware(row.created_at)
    assert created is not None
    return Subscriber(
        id=row.id,
        email=row.email,
        status=row.status,
        cadence=row.cadence,
        bounces=row.bounces or 0,
        created_at=created,
        confirmed_at=_aware(row.confirmed_at),
        unsubscribed_at=_aware(row.unsubscribed_at),
    )


def get_subscriber(engine: Engine, subscriber_id: int) -> Subscriber | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(subscribers).where(subscribers.c.id == subscriber_id)).first()
    return _subscriber(row) if row else None


def find_subscriber(engine: Engine, email: str) -> Subscriber | None:
    address = normalize_email(email)
    with engine.connect() as conn:
        row = conn.execute(sa.select(subscribers).where(subscribers.c.email == address)).first()
    return _subscriber(row) if row else None


def add_subscriber(
    engine: Engine, email: str, cadence: str, *, status: str, now: dt.datetime
) -> tuple[Subscriber, bool]:
    """Insert a subscriber; ``(subscriber, created)``. An existing row is returned untouched."""
    address = normalize_email(email)
    cadence = check_cadence(cadence)
    if status not in STATUSES:
        raise PublisherError(f"status {status!r}: expected one of {', '.join(STATUSES)}")
    at = utc(now)
    with engine.begin() as conn:
        row = conn.execute(sa.select(subscribers).where(subscribers.c.email == address)).first()
        if row is not None:
            return _subscriber(row), False
        conn.execute(
            subscribers.insert().values(
                email=address,
                status=status,
                cadence=cadence,
                bounces=0,
                created_at=at,
                confirmed_at=at if status == "active" else None,
                unsubscribed_at=at if status == "unsubscribed" else None,
            )
        )
        row = conn.execute(sa.select(subscribers).where(subscribers.c.email == address)).one()
    log.info("subscriber added: %s (%s, %s)", address, status, cadence)
    return _subscriber(row), True


def request_subscription(engine: Engine, email: str, cadence: str, *, now: dt.datetime) -> Subscriber | None:
    """Record a sign-up as pending; the subscriber to send a confirmation to, or None.

    Someone already active gets no new email (and the form says the same
    thing either way, so it does not reveal who is subscribed). A person who
    left or bounced may sign up again: they go back to pending.
    """
    address = normalize_email(email)
    cadence = check_cadence(cadence)
    at = utc(now)
    with engine.begin() as conn:
        row = conn.execute(sa.select(subscribers).where(subscribers.c.email == address)).first()
        if row is None:
            conn.execute(
                subscribers.insert().values(
                    email=address, status="pending", cadence=cadence, bounces=0, created_at=at
                )
            )
        elif row.status == "active":
            return None
        else:
            conn.execute(
                subscribers.update()
                .where(subscribers.c.id == row.id)
                .values(status="pending", cadence=cadence, bounces=0)
            )
        row = conn.execute(sa.select(subscribers).where(subscribers.c.email == address)).one()
    return _subscriber(row)


def confirm_subscriber(engine: Engine, subscriber_id: int, email: str, *, now: dt.datetime) -> bool:
    """pending → active; False when nothing changed (already active, gone, or left since)."""
    with engine.begin() as conn:
        result = conn.execute(
            subscribers.update()
            .where(
                subscribers.c.id == subscriber_id,
                subscribers.c.email == email,
                subscribers.c.status == "pending",
            )
            .values(status="active", confirmed_at=utc(now))
        )
    changed = result.rowcount == 1
    if changed:
        log.info("subscriber confirmed: id=%d", subscriber_id)
    return changed


def unsubscribe_subscriber(engine: Engine, subscriber_id: int, email: str, *, now: dt.datetime) -> bool:
    """Any state → unsubscribed; False when it already was (a replayed link) or is gone."""
    with engine.begin() as conn:
        result = conn.execute(
            subscribers.update()
            .where(
                subscribers.c.id == subscriber_id,
                subscribers.c.email == email,
                subscribers.c.status != "unsubscribed",
            )
            .values(status="unsubscribed", unsubscribed_at=utc(now))
        )
    changed = result.rowcount == 1
    if changed:
        log.info("subscriber unsubscribed: id=%d", subscriber_id)
    return changed


def remove_subscriber(engine: Engine, email: str, *, forget: bool, now: dt.datetime) -> Subscriber:
    """Unsubscribe by address (kept, so a later import cannot re-add them), or erase with ``forget``."""
    address = normalize_email(email)
    with engine.begin() as conn:
        row = conn.execute(sa.select(subscribers).where(subscribers.c.email == address)).first()
        if row is None:
            raise NotFound("subscriber", address)
        if forget:
            conn.execute(deliveries.delete().where(deliveries.c.subscriber_id == row.id))
            conn.execute(subscribers.delete().where(subscribers.c.id == row.id))
        else:
            conn.execute(
                subscribers.update()
                .where(subscribers.c.id == row.id, subscribers.c.status != "unsubscribed")
                .values(status="unsubscribed", unsubscribed_at=utc(now))
            )
    log.info("subscriber %s: %s", "erased" if forget else "removed", address)
    return _subscriber(row)


def list_subscribers(
    engine: Engine, *, status: str | None = None, cadence: str | None = None, chunk: int = 1000
) -> Iterator[Subscriber]:
    """All subscribers by id, fetched in chunks so memory stays flat."""
    last = 0
    while True:
        query = sa.select(subscribers).where(subscribers.c.id > last).order_by(subscribers.c.id).limit(chunk)
        if status:
            query = query.where(subscribers.c.status == status)
        if cadence:
            query = query.where(subscribers.c.cadence == cadence)
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return
        for row in rows:
            yield _subscriber(row)
        last = rows[-1].id


def count_subscribers(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(subscribers.c.status, sa.func.count()).group_by(subscribers.c.status)
        ).all()
    counts = {s: 0 for s in STATUSES}
    counts.update({r[0]: r[1] for r in rows})
    return counts


def insert_many(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Bulk insert of already-normalised subscriber rows (import, benchmarks)."""
    if rows:
        conn.execute(subscribers.insert(), list(rows))


def existing_emails(conn: Connection, emails: Iterable[str]) -> set[str]:
    wanted = list(emails)
    found: set[str] = set()
    for i in range(0, len(wanted), 500):
        part = wanted[i : i + 500]
        found.update(conn.execute(sa.select(subscribers.c.email).where(subscribers.c.email.in_(part))).scalars())
    return found


def record_bounce(conn: Connection, subscriber_id: int, *, bounce_after: int) -> bool:
    """Count a permanent failure; True when the subscriber is now marked bounced."""
    conn.execute(
        subscribers.update()
        .where(subscribers.c.id == subscriber_id)
        .values(bounces=sa.func.coalesce(subscribers.c.bounces, 0) + 1)
    )
    result = conn.execute(
        subscribers.update()
        .where(
            subscribers.c.id == subscriber_id,
            subscribers.c.bounces >= bounce_after,
            subscribers.c.status.in_(("active", "pending")),
        )
        .values(status="bounced")
    )
    return result.rowcount == 1


# --------------------------------------------------------------------- issues


@dataclass(frozen=True, slots=True)
class IssueRow:
    id: int
    kind: str
    key: str
    state: str
    subject: str
    preheader: str
    html: str
    text: str
    content_hash: str


def _issue(row: Any) -> IssueRow:
    return IssueRow(
        id=row.id,
        kind=row.kind,
        key=row.key,
        state=row.state,
        subject=row.subject,
        preheader=row.preheader or "",
        html=row.html,
        text=row.text,
        content_hash=row.content_hash,
    )


def get_issue(engine: Engine, issue_id: int) -> IssueRow:
    with engine.connect() as conn:
        row = conn.execute(sa.select(issues).where(issues.c.id == issue_id)).first()
    if row is None:
        raise NotFound("issue", str(issue_id))
    return _issue(row)


def find_issue(engine: Engine, kind: str, key: str) -> IssueRow:
    with engine.connect() as conn:
        row = conn.execute(sa.select(issues).where(issues.c.kind == kind, issues.c.key == key)).first()
    if row is None:
        raise NotFound(f"{kind} issue", key)
    return _issue(row)


def latest_digest(engine: Engine, states: Sequence[str]) -> IssueRow:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(issues)
            .where(issues.c.kind == "digest", issues.c.state.in_(list(states)))
            .order_by(issues.c.created_at.desc(), issues.c.id.desc())
            .limit(1)
        ).first()
    if row is None:
        raise NotFound("digest issue", f"in state {'/'.join(states)}")
    return _issue(row)


def issues_in_state(engine: Engine, states: Sequence[str]) -> list[IssueRow]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(issues).where(issues.c.state.in_(list(states))).order_by(issues.c.id)
        ).all()
    return [_issue(r) for r in rows]


def digest_cadence(period_key: str) -> str:
    """Which subscribers a digest goes to: ISO week keys (``2026-W48``) are weekly."""
    return "weekly" if "-W" in period_key.upper() else "daily"


def audience(issue: IssueRow) -> tuple[str, ...]:
    if issue.kind == "story":
        return ("instant",)
    if issue.kind == "digest":
        return (digest_cadence(issue.key),)
    raise StateError(f"issue {issue.id}: unknown kind {issue.kind!r}")


def start_issue(engine: Engine, issue_id: int, *, now: dt.datetime) -> tuple[IssueRow, int]:
    """approved → sending, creating the ledger rows in the same transaction.

    Idempotent: an issue already ``sending`` (a resumed send) gets no new
    rows, so a subscriber who joined mid-send waits for the next issue.
    Returns the issue and how many rows were created.
    """
    at = utc(now)
    with engine.begin() as conn:
        row = conn.execute(sa.select(issues).where(issues.c.id == issue_id)).first()
        if row is None:
            raise NotFound("issue", str(issue_id))
        issue = _issue(row)
        if issue.state == "sending":
            return issue, 0
        if issue.state != "approved":
            raise StateError(
                f"{issue.kind} issue {issue.key!r} is {issue.state}; only an approved issue can be sent"
            )
        created = _enqueue(conn, issue_id, audience(issue), at)
        conn.execute(issues.update().where(issues.c.id == issue_id).values(state="sending", updated_at=at))
    log.info("issue %s %s: sending to %d recipients", issue.kind, issue.key, created)
    return dataclasses.replace(issue, state="sending"), created


def _enqueue(conn: Connection, issue_id: int, cadences: Sequence[str], at: dt.datetime) -> int:
    existing = sa.select(deliveries.c.id).where(
        deliveries.c.issue_id == issue_id, deliveries.c.subscriber_id == subscribers.c.id
    )
    select = sa.select(
        sa.literal(issue_id),
        subscribers.c.id,
        sa.literal("queued"),
        sa.literal(0),
    ).where(
        subscribers.c.status == "active",
        subscribers.c.cadence.in_(list(cadences)),
        ~sa.exists(existing),
    )
    result = conn.execute(
        deliveries.insert().from_select(["issue_id", "subscriber_id", "state", "attempts"], select)
    )
    return max(result.rowcount or 0, 0)


def enqueue(engine: Engine, issue_id: int, cadences: Sequence[str], *, now: dt.datetime) -> int:
    """One queued row per active subscriber of ``cadences``; existing rows are kept."""
    with engine.begin() as conn:
        return _enqueue(conn, issue_id, cadences, utc(now))


def finish_issue(engine: Engine, issue_id: int, *, now: dt.datetime) -> bool:
    """sending → sent once no row is queued or in flight; True if it changed."""
    at = utc(now)
    with engine.begin() as conn:
        open_rows = conn.execute(
            sa.select(sa.func.count()).where(
                deliveries.c.issue_id == issue_id, deliveries.c.state.in_(("queued", "sending"))
            )
        ).scalar_one()
        if open_rows:
            return False
        result = conn.execute(
            issues.update()
            .where(issues.c.id == issue_id, issues.c.state == "sending")
            .values(state="sent", sent_at=at, updated_at=at)
        )
    return result.rowcount == 1


# ----------------------------------------------------------------- the ledger


def worker_id() -> str:
    """``host:pid:random``: recovery can tell a dead local worker from a live one."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class Claimed:
    delivery_id: int
    subscriber_id: int
    email: str
    attempts: int


def claim(engine: Engine, issue_id: int, worker: str, limit: int, *, now: dt.datetime) -> list[Claimed]:
    """Take up to ``limit`` due queued rows for this worker, atomically.

    Rows whose subscriber is no longer active are marked ``skipped`` here, so
    someone who unsubscribes mid-send gets nothing more.
    """
    at = utc(now)
    tag = f"{worker}#{uuid.uuid4().hex[:8]}"
    due = sa.or_(deliveries.c.next_attempt_at.is_(None), deliveries.c.next_attempt_at <= at)
    picked = (
        sa.select(deliveries.c.id)
        .where(deliveries.c.issue_id == issue_id, deliveries.c.state == "queued", due)
        .order_by(deliveries.c.id)
        .limit(limit)
        .scalar_subquery()
    )
    with engine.begin() as conn:
        # state='queued' is repeated outside the subquery so that a server
        # that re-checks rows after a lock wait (PostgreSQL) skips rows a
        # concurrent claimer took first.
        conn.execute(
            deliveries.update()
            .where(deliveries.c.id.in_(picked), deliveries.c.state == "queued")
            .values(state="sending", claimed_by=tag, claimed_at=at)
        )
        rows = conn.execute(
            sa.select(
                deliveries.c.id,
                deliveries.c.subscriber_id,
                deliveries.c.attempts,
                subscribers.c.email,
                subscribers.c.status,
            )
            .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
            .where(deliveries.c.claimed_by == tag, deliveries.c.state == "sending")
            .order_by(deliveries.c.id)
        ).all()
        gone = [r.id for r in rows if r.status != "active"]
        if gone:
            conn.execute(
                deliveries.update()
                .where(deliveries.c.id.in_(gone))
                .values(state="skipped", last_error="subscriber no longer active", claimed_by=None)
            )
    return [Claimed(r.id, r.subscriber_id, r.email, r.attempts) for r in rows if r.status == "active"]


def mark_sent(engine: Engine, delivery_ids: Sequence[int], *, now: dt.datetime) -> None:
    if not delivery_ids:
        return
    with engine.begin() as conn:
        conn.execute(
            deliveries.update()
            .where(deliveries.c.id.in_(list(delivery_ids)))
            .values(
                state="sent",
                sent_at=utc(now),
                attempts=deliveries.c.attempts + 1,
                last_error=None,
                claimed_by=None,
            )
        )


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
) -> tuple[int, int, list[int]]:
    """Record failed attempts: ``(retrying, failed, bounced subscriber ids)``.

    A temporary failure goes back to the queue with exponential backoff
    until ``max_attempts``; a permanent one fails the row and counts a
    bounce against the subscriber.
    """
    at = utc(now)
    retrying = failed = 0
    bounced: list[int] = []
    with engine.begin() as conn:
        for f in failures:
            attempts = f.attempts + 1
            values: dict[str, Any] = {"attempts": attempts, "last_error": f.error[:500], "claimed_by": None}
            if f.permanent or attempts >= max_attempts:
                values["state"] = "failed"
                failed += 1
            else:
                values["state"] = "queued"
                values["next_attempt_at"] = at + dt.timedelta(seconds=backoff * 2 ** (attempts - 1))
                retrying += 1
            conn.execute(deliveries.update().where(deliveries.c.id == f.delivery_id).values(**values))
            if f.permanent and record_bounce(conn, f.subscriber_id, bounce_after=bounce_after):
                bounced.append(f.subscriber_id)
    return retrying, failed, bounced


def release(engine: Engine, worker: str, delivery_ids: Sequence[int] | None = None) -> int:
    """Give claimed rows back to the queue (a clean stop); all of ``worker``'s if no ids."""
    where = [deliveries.c.state == "sending", deliveries.c.claimed_by.like(f"{worker}#%")]
    if delivery_ids is not None:
        if not delivery_ids:
            return 0
        where.append(deliveries.c.id.in_(list(delivery_ids)))
    with engine.begin() as conn:
        result = conn.execute(
            deliveries.update().where(*where).values(state="queued", claimed_by=None, claimed_at=None)
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
    scope = [deliveries.c.state == "sending"]
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
        started = _aware(claimed_at)
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
                .values(state="queued", claimed_by=None, claimed_at=None)
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
        rows = conn.execute(
            sa.select(deliveries.c.state, sa.func.count())
            .where(deliveries.c.issue_id == issue_id)
            .group_by(deliveries.c.state)
        ).all()
    counts = {state: n for state, n in rows if state in DELIVERY_STATES}
    return Progress(**counts)


def next_retry(engine: Engine, issue_id: int) -> dt.datetime | None:
    """When the earliest queued row becomes due (None: nothing queued)."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(sa.func.count(), sa.func.min(deliveries.c.next_attempt_at)).where(
                deliveries.c.issue_id == issue_id, deliveries.c.state == "queued"
            )
        ).one()
    if not row[0]:
        return None
    return _aware(row[1]) or dt.datetime.min.replace(tzinfo=dt.timezone.utc)


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
            .where(deliveries.c.issue_id == issue_id, deliveries.c.state == "failed")
            .order_by(deliveries.c.id)
            .limit(limit)
        ).all()
    return [DeliveryRow(r.email, r.state, r.attempts, r.last_error, _aware(r.sent_at)) for r in rows]


def sent_since(engine: Engine, since: dt.datetime) -> list[dt.datetime]:
    """Send times after ``since`` across all issues (seeds the hourly rate window)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(deliveries.c.sent_at)
            .where(deliveries.c.state == "sent", deliveries.c.sent_at > utc(since))
            .order_by(deliveries.c.sent_at)
        ).scalars()
        return [t for t in (_aware(r) for r in rows) if t is not None]
