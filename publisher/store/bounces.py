"""Bounce and complaint events: recorded once each, applied to the subscriber, counted per issue.

What an event does to its subscriber: a hard bounce counts against
``bounce_after``; ``soft_after`` soft bounces count as one hard one; a
complaint unsubscribes at once. Reactivation (an operator's undo) is an
event too, so the record says who brought a bounced reader back.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..core.addresses import InvalidAddress, normalize_email
from ..core.states import SubscriberStatus
from .schema import bounces, subscribers
from .subscribers import utc

log = logging.getLogger(__name__)


class BounceKind(StrEnum):
    HARD = "hard"  # the mailbox does not exist or refuses us for good
    SOFT = "soft"  # full mailbox, temporary refusal reported after the fact
    COMPLAINT = "complaint"  # the reader pressed "this is spam"
    UNKNOWN = "unknown"  # the connection dropped after the data: may be delivered
    REACTIVATED = "reactivated"  # an operator undid a bounce


@dataclass(frozen=True, slots=True)
class Event:
    email: str
    kind: BounceKind
    source: str  # smtp, dsn, ses, postmark, mailgun, sendgrid, cli
    detail: str = ""
    raw_ref: str | None = None  # a Maildir key, an SNS MessageId, a provider event id
    issue_id: int | None = None


@dataclass(frozen=True, slots=True)
class Applied:
    """What one event did: recorded (False: seen before), and the subscriber's new status if it changed."""

    recorded: bool
    status: str | None = None


def insert_event(conn: Connection, event: Event, subscriber_id: int | None, *, at: dt.datetime) -> bool:
    """One step of the caller's transaction; False when this (source, raw_ref, email) is already stored."""
    if event.raw_ref is not None:
        seen = conn.execute(
            sa.select(bounces.c.id).where(
                bounces.c.source == event.source, bounces.c.raw_ref == event.raw_ref, bounces.c.email == event.email
            )
        ).first()
        if seen is not None:
            return False
    conn.execute(
        bounces.insert().values(
            subscriber_id=subscriber_id, email=event.email, issue_id=event.issue_id, source=event.source,
            kind=event.kind.value, detail=event.detail[:1000], raw_ref=event.raw_ref, at=utc(at),
        )
    )
    return True


def apply_event(engine: Engine, event: Event, *, bounce_after: int, soft_after: int, now: dt.datetime) -> Applied:
    """Record an asynchronous event and apply it to the subscriber (idempotent by raw_ref)."""
    try:
        address = normalize_email(event.email)
    except InvalidAddress:
        address = event.email.strip().lower()
    event = Event(address, event.kind, event.source, event.detail, event.raw_ref, event.issue_id)
    with engine.begin() as conn:
        row = conn.execute(sa.select(subscribers).where(subscribers.c.email == address)).first()
        if not insert_event(conn, event, row.id if row else None, at=now):
            return Applied(False)
        if row is None:
            log.info("%s %s for unknown address %s", event.source, event.kind, address)
            return Applied(True)
        status = _apply(conn, row, event, bounce_after=bounce_after, soft_after=soft_after, now=now)
    if status:
        log.info("%s %s: %s is now %s", event.source, event.kind, address, status)
    return Applied(True, status)


def _apply(conn: Connection, row: Any, event: Event, *, bounce_after: int, soft_after: int, now: dt.datetime) -> str | None:
    live = (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING)
    if event.kind is BounceKind.COMPLAINT:
        result = conn.execute(
            subscribers.update()
            .where(subscribers.c.id == row.id, subscribers.c.status != SubscriberStatus.UNSUBSCRIBED)
            .values(status=SubscriberStatus.UNSUBSCRIBED, unsubscribed_at=utc(now))
        )
        return SubscriberStatus.UNSUBSCRIBED if result.rowcount == 1 else None
    if event.kind is BounceKind.SOFT:
        if soft_after <= 0:
            return None
        softs = conn.execute(
            sa.select(sa.func.count()).where(
                bounces.c.subscriber_id == row.id, bounces.c.kind == BounceKind.SOFT,
                bounces.c.at > _last_reactivation(conn, row.id),
            )
        ).scalar_one()
        if softs % soft_after:
            return None
    elif event.kind is not BounceKind.HARD:
        return None
    conn.execute(
        subscribers.update().where(subscribers.c.id == row.id).values(bounces=sa.func.coalesce(subscribers.c.bounces, 0) + 1)
    )
    result = conn.execute(
        subscribers.update()
        .where(subscribers.c.id == row.id, subscribers.c.bounces >= bounce_after, subscribers.c.status.in_(live))
        .values(status=SubscriberStatus.BOUNCED)
    )
    return SubscriberStatus.BOUNCED if result.rowcount == 1 else None


def _last_reactivation(conn: Connection, subscriber_id: int) -> dt.datetime:
    at = conn.execute(
        sa.select(sa.func.max(bounces.c.at)).where(
            bounces.c.subscriber_id == subscriber_id, bounces.c.kind == BounceKind.REACTIVATED
        )
    ).scalar_one()
    return at if isinstance(at, dt.datetime) else dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def reactivate(
    engine: Engine, *, email: str | None = None, bounced_since: dt.datetime | None = None, by: str, now: dt.datetime
) -> list[str]:
    """Bounced → active, bounce count reset, one ``reactivated`` event each naming ``by``.

    ``email``: that address; ``bounced_since``: every bounced subscriber with a
    hard bounce recorded at or after that time (e.g. a relay's bad afternoon).
    """
    if (email is None) == (bounced_since is None):
        raise ValueError("give an address or a date, not both")
    with engine.begin() as conn:
        query = sa.select(subscribers.c.id, subscribers.c.email).where(subscribers.c.status == SubscriberStatus.BOUNCED)
        if email is not None:
            query = query.where(subscribers.c.email == normalize_email(email))
        else:
            assert bounced_since is not None
            query = query.where(
                subscribers.c.id.in_(
                    sa.select(bounces.c.subscriber_id).where(
                        bounces.c.kind == BounceKind.HARD, bounces.c.at >= utc(bounced_since)
                    )
                )
            )
        rows = conn.execute(query.order_by(subscribers.c.id)).all()
        for sid, address in rows:
            conn.execute(
                subscribers.update().where(subscribers.c.id == sid).values(status=SubscriberStatus.ACTIVE, bounces=0)
            )
            insert_event(conn, Event(address, BounceKind.REACTIVATED, "cli", f"reactivated by {by}"), sid, at=now)
    for _, address in rows:
        log.info("subscriber reactivated by %s: %s", by, address)
    return [address for _, address in rows]


@dataclass(frozen=True, slots=True)
class IssueCounts:
    bounces: int = 0  # hard and soft
    complaints: int = 0
    unknown: int = 0


def issue_counts(engine: Engine, issue_ids: list[int]) -> dict[int, IssueCounts]:
    """Bounce, complaint and unknown-outcome counts per issue (for the desk and the CLI)."""
    if not issue_ids:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(bounces.c.issue_id, bounces.c.kind, sa.func.count())
            .where(bounces.c.issue_id.in_(issue_ids))
            .group_by(bounces.c.issue_id, bounces.c.kind)
        ).all()
    raw: dict[int, dict[str, int]] = {}
    for issue_id, kind, n in rows:
        raw.setdefault(issue_id, {})[kind] = n
    return {
        i: IssueCounts(
            bounces=c.get(BounceKind.HARD, 0) + c.get(BounceKind.SOFT, 0),
            complaints=c.get(BounceKind.COMPLAINT, 0),
            unknown=c.get(BounceKind.UNKNOWN, 0),
        )
        for i, c in raw.items()
    }


def events_for(engine: Engine, email: str) -> list[tuple[str, str, str, str]]:
    """(at, source, kind, detail) of one address, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(bounces.c.at, bounces.c.source, bounces.c.kind, bounces.c.detail)
            .where(bounces.c.email == normalize_email(email))
            .order_by(bounces.c.id)
        ).all()
    return [(r.at.isoformat(), r.source, r.kind, r.detail) for r in rows]
