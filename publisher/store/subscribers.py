"""Subscriber queries: one row per address, in one of the SubscriberStatus states.

Functions that are a whole transaction take the engine; those that are a
step of the caller's transaction take a connection. Every timestamp is
aware UTC (the schema's UTCDateTime).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..core.addresses import normalize_email
from ..core.errors import NotFound, PublisherError
from ..core.states import CADENCES, SUBSCRIBER_STATUSES, SubscriberStatus
from .engine import insert_ignore
from .schema import deliveries, signups, subscribers

log = logging.getLogger(__name__)


def check_cadence(value: str) -> str:
    cadence = value.strip().lower()
    if cadence not in CADENCES:
        raise PublisherError(f"cadence {value!r}: expected one of {', '.join(CADENCES)}")
    return cadence



def utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime passed to the store")
    return value.astimezone(dt.timezone.utc)


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
    created = row.created_at
    assert created is not None
    return Subscriber(
        id=row.id,
        email=row.email,
        status=row.status,
        cadence=row.cadence,
        bounces=row.bounces or 0,
        created_at=created,
        confirmed_at=row.confirmed_at,
        unsubscribed_at=row.unsubscribed_at,
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
    if status not in SUBSCRIBER_STATUSES:
        raise PublisherError(f"status {status!r}: expected one of {', '.join(SUBSCRIBER_STATUSES)}")
    at = utc(now)
    with engine.begin() as conn:
        # One statement: two processes adding the same address cannot both insert.
        created = insert_ignore(conn, subscribers, dict(
            email=address,
            status=status,
            cadence=cadence,
            bounces=0,
            created_at=at,
            confirmed_at=at if status == SubscriberStatus.ACTIVE else None,
            unsubscribed_at=at if status == SubscriberStatus.UNSUBSCRIBED else None,
        ), ["email"])
        row = conn.execute(sa.select(subscribers).where(subscribers.c.email == address)).one()
        if not created:
            return _subscriber(row), False
    log.info("subscriber added: %s (%s, %s)", address, status, cadence)
    return _subscriber(row), True


@dataclass(frozen=True, slots=True)
class Signup:
    """A sign-up to mail a confirmation link for."""

    id: int
    subscriber_id: int
    email: str


def request_signup(engine: Engine, email: str, cadence: str, *, now: dt.datetime, resend_after: dt.timedelta) -> Signup | None:
    """Record a sign-up; the one to mail a confirmation for, or None.

    None when the address is already active, or when a confirmation went to
    it less than ``resend_after`` ago (that link still works). A new address
    is stored as pending; a reader who left or bounced keeps that status and
    history until they confirm again. Every sign-up is one row either way,
    so the work (and the write lock it takes) does not tell the cases apart.
    """
    address = normalize_email(email)
    cadence = check_cadence(cadence)
    at = utc(now)
    with engine.begin() as conn:
        # ON CONFLICT DO NOTHING, then read: two sign-ups at once never race into an IntegrityError.
        insert_ignore(conn, subscribers, dict(
            email=address, status=SubscriberStatus.PENDING, cadence=cadence, bounces=0, created_at=at
        ), ["email"])
        row = conn.execute(sa.select(subscribers).where(subscribers.c.email == address).with_for_update()).one()
        last_mailed = conn.execute(
            sa.select(signups.c.mailed_at).where(signups.c.subscriber_id == row.id, signups.c.mailed_at.is_not(None))
            .order_by(signups.c.id.desc()).limit(1)
        ).scalar_one_or_none()
        mail = row.status != SubscriberStatus.ACTIVE and (last_mailed is None or last_mailed <= at - resend_after)
        inserted = conn.execute(
            signups.insert().values(subscriber_id=row.id, cadence=cadence, requested_at=at, mailed_at=at if mail else None)
        ).inserted_primary_key
        assert inserted is not None
    return Signup(id=int(inserted[0]), subscriber_id=row.id, email=address) if mail else None


ConfirmOutcome = Literal["confirmed", "already", "void"]


def confirm_signup(engine: Engine, subscriber_id: int, signup_id: int, *, now: dt.datetime, max_age: dt.timedelta) -> ConfirmOutcome:
    """Activate a subscriber from one sign-up: ``confirmed``, ``already`` (active, or this one used), or ``void``.

    A sign-up confirms only while it is the subscriber's newest mailed one,
    younger than ``max_age``, and made after the reader last unsubscribed.
    """
    at = utc(now)
    with engine.begin() as conn:
        sub = conn.execute(sa.select(subscribers).where(subscribers.c.id == subscriber_id)).first()
        signup = conn.execute(
            sa.select(signups).where(signups.c.id == signup_id, signups.c.subscriber_id == subscriber_id)
        ).first()
        if sub is None or signup is None:
            return "void"
        newer = conn.execute(
            sa.select(sa.func.count()).where(
                signups.c.subscriber_id == subscriber_id, signups.c.id > signup_id, signups.c.mailed_at.is_not(None)
            )
        ).scalar_one()
        requested = signup.requested_at
        if newer or requested < at - max_age or (sub.unsubscribed_at is not None and sub.unsubscribed_at >= requested):
            return "void"
        if signup.confirmed_at is not None or sub.status == SubscriberStatus.ACTIVE:
            return "already"
        conn.execute(
            subscribers.update().where(subscribers.c.id == subscriber_id)
            .values(status=SubscriberStatus.ACTIVE, cadence=signup.cadence, confirmed_at=at, bounces=0)
        )
        conn.execute(signups.update().where(signups.c.id == signup_id).values(confirmed_at=at))
    log.info("subscriber confirmed: id=%d (sign-up %d)", subscriber_id, signup_id)
    return "confirmed"


def unsubscribe_subscriber(engine: Engine, subscriber_id: int, email: str, *, now: dt.datetime) -> bool:
    """Any state → unsubscribed; False when it already was (a replayed link) or is gone."""
    with engine.begin() as conn:
        result = conn.execute(
            subscribers.update()
            .where(
                subscribers.c.id == subscriber_id,
                subscribers.c.email == email,
                subscribers.c.status != SubscriberStatus.UNSUBSCRIBED,
            )
            .values(status=SubscriberStatus.UNSUBSCRIBED, unsubscribed_at=utc(now))
        )
    changed = result.rowcount == 1
    if changed:
        log.info("subscriber unsubscribed: id=%d", subscriber_id)
    return changed


def set_cadence(engine: Engine, subscriber_id: int, email: str, cadence: str) -> bool:
    """An active reader's new cadence (from their own emailed link); False when nothing changed."""
    cadence = check_cadence(cadence)
    with engine.begin() as conn:
        result = conn.execute(
            subscribers.update()
            .where(
                subscribers.c.id == subscriber_id,
                subscribers.c.email == email,
                subscribers.c.status == SubscriberStatus.ACTIVE,
                subscribers.c.cadence != cadence,
            )
            .values(cadence=cadence)
        )
    changed = result.rowcount == 1
    if changed:
        log.info("subscriber id=%d now %s", subscriber_id, cadence)
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
            conn.execute(signups.delete().where(signups.c.subscriber_id == row.id))
            conn.execute(subscribers.delete().where(subscribers.c.id == row.id))
        else:
            conn.execute(
                subscribers.update()
                .where(subscribers.c.id == row.id, subscribers.c.status != SubscriberStatus.UNSUBSCRIBED)
                .values(status=SubscriberStatus.UNSUBSCRIBED, unsubscribed_at=utc(now))
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
    counts = {s: 0 for s in SUBSCRIBER_STATUSES}
    counts.update({r[0]: r[1] for r in rows})
    return counts


def counts_by_cadence(engine: Engine) -> dict[tuple[str, str], int]:
    """(status, cadence) → number of subscribers."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(subscribers.c.status, subscribers.c.cadence, sa.func.count()).group_by(subscribers.c.status, subscribers.c.cadence)
        ).all()
    return {(r[0], r[1]): int(r[2]) for r in rows}


def insert_new(engine: Engine, entries: Sequence[tuple[str, str, str]], *, now: dt.datetime) -> int:
    """Insert (normalised email, status, cadence) rows whose address is not stored yet; how many went in.

    Addresses already present are left as they are, so a re-import can never
    resubscribe someone who left.
    """
    at = utc(now)
    with engine.begin() as conn:
        known = _existing_emails(conn, (email for email, _, _ in entries))
        rows: list[dict[str, Any]] = [
            {
                "email": email,
                "status": status,
                "cadence": cadence,
                "bounces": 0,
                "created_at": at,
                "confirmed_at": at if status == SubscriberStatus.ACTIVE else None,
                "unsubscribed_at": at if status == SubscriberStatus.UNSUBSCRIBED else None,
            }
            for email, status, cadence in entries
            if email not in known
        ]
        if rows:
            conn.execute(subscribers.insert(), rows)
    return len(rows)


def _existing_emails(conn: Connection, emails: Iterable[str]) -> set[str]:
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
            subscribers.c.status.in_((SubscriberStatus.ACTIVE, SubscriberStatus.PENDING)),
        )
        .values(status=SubscriberStatus.BOUNCED)
    )
    return result.rowcount == 1

