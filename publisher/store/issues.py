"""Issue queries: story and digest issues, their states and the start and end of a send.

States and their allowed moves come from :mod:`publisher.core.states`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..core.errors import NotFound, StateError
from ..core.states import Cadence, DeliveryState, IssueState, SubscriberStatus
from .schema import deliveries, issues, subscribers
from .subscribers import utc

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IssueRow:
    id: int
    kind: str
    key: str
    state: IssueState
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
        state=IssueState(row.state),
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
    return Cadence.WEEKLY.value if "-W" in period_key.upper() else Cadence.DAILY.value


def audience(issue: IssueRow) -> tuple[str, ...]:
    if issue.kind == "story":
        return (Cadence.INSTANT.value,)
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
        if issue.state is IssueState.SENDING:
            return issue, 0
        if issue.state is not IssueState.APPROVED:
            raise StateError(
                f"{issue.kind} issue {issue.key!r} is {issue.state}; only an approved issue can be sent"
            )
        created = _enqueue(conn, issue_id, audience(issue), at)
        conn.execute(issues.update().where(issues.c.id == issue_id).values(state=IssueState.SENDING.value, updated_at=at))
    log.info("issue %s %s: sending to %d recipients", issue.kind, issue.key, created)
    return dataclasses.replace(issue, state=IssueState.SENDING), created


def _enqueue(conn: Connection, issue_id: int, cadences: Sequence[str], at: dt.datetime) -> int:
    existing = sa.select(deliveries.c.id).where(
        deliveries.c.issue_id == issue_id, deliveries.c.subscriber_id == subscribers.c.id
    )
    select = sa.select(
        sa.literal(issue_id),
        subscribers.c.id,
        sa.literal(DeliveryState.QUEUED.value),
        sa.literal(0),
    ).where(
        subscribers.c.status == SubscriberStatus.ACTIVE.value,
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
                deliveries.c.issue_id == issue_id, deliveries.c.state.in_((DeliveryState.QUEUED.value, DeliveryState.SENDING.value))
            )
        ).scalar_one()
        if open_rows:
            return False
        result = conn.execute(
            issues.update()
            .where(issues.c.id == issue_id, issues.c.state == IssueState.SENDING.value)
            .values(state=IssueState.SENT.value, sent_at=at, updated_at=at)
        )
    return result.rowcount == 1


# ------------------------------------------------- steps of the pipeline's transactions


class IssueContent(Protocol):
    """A rendered issue as the store keeps it (``render.email.RenderedIssue`` fits)."""

    @property
    def subject(self) -> str: ...
    @property
    def preheader(self) -> str: ...
    @property
    def html(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def content_hash(self) -> str: ...


@dataclass(frozen=True, slots=True)
class IssueHead:
    """An issue without its content: what state decisions need."""

    id: int
    kind: str
    key: str
    state: IssueState
    content_hash: str


def head(conn: Connection, kind: str, key: str, *, lock: bool = False) -> IssueHead | None:
    query = sa.select(issues.c.id, issues.c.kind, issues.c.key, issues.c.state, issues.c.content_hash).where(
        issues.c.kind == kind, issues.c.key == key
    )
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).first()
    return None if row is None else IssueHead(row.id, row.kind, row.key, IssueState(row.state), row.content_hash)


def _content(content: IssueContent) -> dict[str, Any]:
    return {
        "subject": content.subject,
        "preheader": content.preheader,
        "html": content.html,
        "text": content.text,
        "content_hash": content.content_hash,
    }


def insert(conn: Connection, kind: str, key: str, state: IssueState, content: IssueContent, *, now: dt.datetime) -> int:
    at = utc(now)
    approved = {"approved_at": at} if state is IssueState.APPROVED else {}
    inserted = conn.execute(
        sa.insert(issues).values(kind=kind, key=key, state=state.value, created_at=at, updated_at=at, **approved, **_content(content))
    ).inserted_primary_key
    assert inserted is not None
    return int(inserted[0])


def update(conn: Connection, issue: IssueHead, state: IssueState, content: IssueContent, *, now: dt.datetime) -> None:
    """New content and state for an open issue (a re-render after an edit)."""
    at = utc(now)
    approved = {"approved_at": at} if state is IssueState.APPROVED and issue.state is not IssueState.APPROVED else {}
    conn.execute(
        sa.update(issues).where(issues.c.id == issue.id).values(state=state.value, updated_at=at, **approved, **_content(content))
    )


def move(conn: Connection, issue: IssueHead, target: IssueState, *, now: dt.datetime) -> None:
    """Change an issue's state after the caller checked the move (core.states.check_move)."""
    at = utc(now)
    values: dict[str, Any] = {"state": target.value, "updated_at": at}
    if target is IssueState.APPROVED:
        values["approved_at"] = at
    conn.execute(sa.update(issues).where(issues.c.id == issue.id, issues.c.state == issue.state.value).values(**values))


def exists(conn: Connection, kind: str, key: str) -> bool:
    return conn.execute(sa.select(issues.c.id).where(issues.c.kind == kind, issues.c.key == key)).first() is not None


@dataclass(frozen=True, slots=True)
class IssueSummary:
    id: int
    key: str
    state: IssueState
    subject: str
    updated_at: dt.datetime


def recent_digests(engine: Engine, *, limit: int = 20) -> list[IssueSummary]:
    i = issues
    query = (
        sa.select(i.c.id, i.c.key, i.c.state, i.c.subject, i.c.updated_at)
        .where(i.c.kind == "digest")
        .order_by(i.c.key.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [IssueSummary(r.id, r.key, IssueState(r.state), r.subject, r.updated_at) for r in conn.execute(query)]


def issue_id(engine: Engine, kind: str, key: str) -> int | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(issues.c.id).where(issues.c.kind == kind, issues.c.key == key)).first()
    return None if row is None else int(row.id)
