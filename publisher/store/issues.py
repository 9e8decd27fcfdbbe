"""Issue queries: story and digest issues, their states, their history, and the start and end of a send.

States and their allowed moves come from :mod:`publisher.core.states`; every
move is written to ``issue_events`` with who made it, in the same
transaction as the move itself.
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
from ..core.states import Cadence, DeliveryState, IssueState, SubscriberStatus, check_move
from .engine import insert_ignore
from .schema import deliveries, issue_events, issue_stories, issues, subscribers
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
    cadence: str = Cadence.INSTANT.value  # the audience
    send_at: dt.datetime | None = None

    @property
    def label(self) -> str:
        return f"{self.kind} {self.key}" if self.kind == "story" else f"{self.cadence} digest {self.key}"


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
        cadence=row.cadence or (Cadence.INSTANT.value if row.kind == "story" else Cadence.DAILY.value),
        send_at=row.send_at,
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


def latest_digest(engine: Engine, states: Sequence[str], *, cadence: str | None = None) -> IssueRow:
    """The newest digest in one of ``states`` (of one cadence, or of any)."""
    query = sa.select(issues).where(issues.c.kind == "digest", issues.c.state.in_(list(states)))
    if cadence is not None:
        query = query.where(issues.c.cadence == cadence)
    with engine.connect() as conn:
        row = conn.execute(query.order_by(issues.c.created_at.desc(), issues.c.id.desc()).limit(1)).first()
    if row is None:
        what = f"{cadence} digest issue" if cadence else "digest issue"
        raise NotFound(what, f"in state {'/'.join(states)}")
    return _issue(row)


def digests(conn: Connection) -> list[IssueRow]:
    """Every digest issue with its content (to rewrite their web pages)."""
    return [_issue(r) for r in conn.execute(sa.select(issues).where(issues.c.kind == "digest").order_by(issues.c.id))]


def issues_in_state(engine: Engine, states: Sequence[str]) -> list[IssueRow]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(issues).where(issues.c.state.in_(list(states))).order_by(issues.c.id)).all()
    return [_issue(r) for r in rows]


def due_issues(engine: Engine, *, now: dt.datetime) -> list[IssueRow]:
    """What a drain sends: approved and sending issues, and scheduled ones whose time has come."""
    due = sa.or_(
        issues.c.state.in_([IssueState.APPROVED, IssueState.SENDING]),
        sa.and_(issues.c.state == IssueState.SCHEDULED, issues.c.send_at <= utc(now)),
    )
    with engine.connect() as conn:
        rows = conn.execute(sa.select(issues).where(due).order_by(issues.c.id)).all()
    return [_issue(r) for r in rows]


def _audience_query(cadence: str) -> Any:
    return sa.select(subscribers.c.id).where(
        subscribers.c.status == SubscriberStatus.ACTIVE, subscribers.c.cadence == cadence
    )


def audience_size(conn: Connection, cadence: str) -> int:
    """Active subscribers of ``cadence``: whom an issue released now would reach."""
    return int(conn.execute(sa.select(sa.func.count()).select_from(_audience_query(cadence).subquery())).scalar_one())


def _record(conn: Connection, issue_id: int, before: IssueState | None, after: IssueState, actor: str, at: dt.datetime, note: str | None = None) -> None:
    conn.execute(sa.insert(issue_events).values(issue_id=issue_id, from_state=before, to_state=after, actor=actor, at=at, note=note))


def start_issue(engine: Engine, issue_id: int, *, now: dt.datetime, actor: str = "service") -> tuple[IssueRow, int]:
    """approved (or scheduled and due) → sending, creating the ledger rows in the same transaction.

    Idempotent: an issue already ``sending`` (a resumed send) gets no new
    rows, so a subscriber who joined mid-send waits for the next issue. An
    issue that would reach nobody is not started: it stays released until a
    send reaches someone. Returns the issue and how many rows were created.
    """
    at = utc(now)
    with engine.begin() as conn:
        row = conn.execute(sa.select(issues).where(issues.c.id == issue_id).with_for_update()).first()
        if row is None:
            raise NotFound("issue", str(issue_id))
        issue = _issue(row)
        if issue.state is IssueState.SENDING:
            return issue, 0
        if issue.state is IssueState.SCHEDULED and issue.send_at is not None and issue.send_at > at:
            raise StateError(f"{issue.label} is scheduled for {issue.send_at.isoformat()}")
        if issue.state not in (IssueState.APPROVED, IssueState.SCHEDULED):
            raise StateError(f"{issue.label} is {issue.state.label}; only an approved issue can be sent")
        created = _enqueue(conn, issue_id, issue.cadence)
        if created == 0:
            return issue, 0
        conn.execute(issues.update().where(issues.c.id == issue_id).values(state=IssueState.SENDING, updated_at=at))
        _record(conn, issue_id, issue.state, IssueState.SENDING, actor, at, f"{created} recipients")
    log.info("issue %s: sending to %d recipients", issue.label, created)
    return dataclasses.replace(issue, state=IssueState.SENDING), created


def _enqueue(conn: Connection, issue_id: int, cadence: str) -> int:
    count = sa.select(sa.func.count()).where(deliveries.c.issue_id == issue_id)
    before = int(conn.execute(count).scalar_one())
    existing = sa.select(deliveries.c.id).where(deliveries.c.issue_id == issue_id, deliveries.c.subscriber_id == subscribers.c.id)
    select = sa.select(
        sa.literal(issue_id), subscribers.c.id, sa.literal(DeliveryState.QUEUED.value), sa.literal(0)
    ).where(
        subscribers.c.status == SubscriberStatus.ACTIVE, subscribers.c.cadence == cadence, ~sa.exists(existing)
    )
    conn.execute(deliveries.insert().from_select(["issue_id", "subscriber_id", "state", "attempts"], select))
    # Counted, not taken from rowcount: some drivers report -1 for INSERT … SELECT.
    return int(conn.execute(count).scalar_one()) - before


def finish_issue(engine: Engine, issue_id: int, *, now: dt.datetime) -> bool:
    """sending → sent once no row is queued or in flight; True if it changed."""
    at = utc(now)
    with engine.begin() as conn:
        # Lock the issue first: two workers finishing at once serialise here, and one records the move.
        conn.execute(sa.select(issues.c.id).where(issues.c.id == issue_id).with_for_update()).first()
        open_rows = conn.execute(
            sa.select(sa.func.count()).where(
                deliveries.c.issue_id == issue_id, deliveries.c.state.in_((DeliveryState.QUEUED, DeliveryState.SENDING))
            )
        ).scalar_one()
        if open_rows:
            return False
        moved = conn.execute(
            issues.update()
            .where(issues.c.id == issue_id, issues.c.state == IssueState.SENDING)
            .values(state=IssueState.SENT, sent_at=at, updated_at=at)
            .returning(issues.c.id)
        ).first() is not None
        if moved:
            _record(conn, issue_id, IssueState.SENDING, IssueState.SENT, "service", at)
    return moved


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
    cadence: str
    send_at: dt.datetime | None

    @property
    def label(self) -> str:
        return f"story {self.key}" if self.kind == "story" else f"{self.cadence} digest {self.key}"


def head(conn: Connection, kind: str, key: str, *, lock: bool = False) -> IssueHead | None:
    i = issues
    query = sa.select(i.c.id, i.c.kind, i.c.key, i.c.state, i.c.content_hash, i.c.cadence, i.c.send_at).where(
        i.c.kind == kind, i.c.key == key
    )
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        return None
    cadence = row.cadence or (Cadence.INSTANT.value if row.kind == "story" else Cadence.DAILY.value)
    return IssueHead(row.id, row.kind, row.key, IssueState(row.state), row.content_hash, cadence, row.send_at)


def _content(content: IssueContent) -> dict[str, Any]:
    return {
        "subject": content.subject,
        "preheader": content.preheader,
        "html": content.html,
        "text": content.text,
        "content_hash": content.content_hash,
    }


def insert(
    conn: Connection, kind: str, key: str, state: IssueState, content: IssueContent, *, now: dt.datetime,
    cadence: str = Cadence.INSTANT.value, actor: str = "service", members: Sequence[str] = (),
) -> int:
    at = utc(now)
    approved = {"approved_at": at} if state is IssueState.APPROVED else {}
    values = dict(kind=kind, key=key, state=state.value, cadence=cadence, created_at=at, updated_at=at, **approved, **_content(content))
    # ON CONFLICT DO NOTHING: a second process making the same issue gets the first one's id, not an IntegrityError.
    created = insert_ignore(conn, issues, values, ["kind", "key"])
    issue_id = int(conn.execute(sa.select(issues.c.id).where(issues.c.kind == kind, issues.c.key == key)).scalar_one())
    if created:
        if members:
            conn.execute(sa.insert(issue_stories), [{"issue_id": issue_id, "position": i, "slug": s} for i, s in enumerate(members)])
        _record(conn, issue_id, None, state, actor, at)
    return issue_id


def members(conn: Connection, issue_id: int) -> list[str]:
    """The slugs of the stories a digest carries, in its order."""
    query = sa.select(issue_stories.c.slug).where(issue_stories.c.issue_id == issue_id).order_by(issue_stories.c.position)
    return list(conn.execute(query).scalars())


def update(conn: Connection, issue: IssueHead, state: IssueState, content: IssueContent, *, now: dt.datetime, actor: str = "service") -> None:
    """New content and state for an open issue (a re-render after an edit)."""
    at = utc(now)
    values: dict[str, Any] = {"state": state.value, "updated_at": at, **_content(content)}
    if state is not issue.state:
        check_move(issue.label, issue.state, state)
        if state is IssueState.APPROVED:
            values["approved_at"] = at
        if state is not IssueState.SCHEDULED:
            values["send_at"] = None
        _record(conn, issue.id, issue.state, state, actor, at, "the story changed")
    conn.execute(sa.update(issues).where(issues.c.id == issue.id).values(**values))


def move(
    conn: Connection, issue: IssueHead, target: IssueState, *, now: dt.datetime, actor: str,
    send_at: dt.datetime | None = None, note: str | None = None,
) -> None:
    """Change an issue's state after checking the move against ``core.states.TRANSITIONS``."""
    check_move(issue.label, issue.state, target)
    at = utc(now)
    values: dict[str, Any] = {"state": target.value, "updated_at": at, "send_at": utc(send_at) if send_at else None}
    if target in (IssueState.APPROVED, IssueState.SCHEDULED):
        values["approved_at"] = at
    done = conn.execute(
        sa.update(issues).where(issues.c.id == issue.id, issues.c.state == issue.state.value).values(**values).returning(issues.c.id)
    ).first()
    if done is None:
        raise StateError(f"{issue.label} changed state meanwhile; try again")
    _record(conn, issue.id, issue.state, target, actor, at, note)


def exists(conn: Connection, kind: str, key: str) -> bool:
    return conn.execute(sa.select(issues.c.id).where(issues.c.kind == kind, issues.c.key == key)).first() is not None


@dataclass(frozen=True, slots=True)
class IssueEvent:
    at: dt.datetime
    from_state: IssueState | None
    to_state: IssueState
    actor: str
    note: str | None


def history(engine: Engine, issue_id: int) -> list[IssueEvent]:
    e = issue_events
    query = sa.select(e.c.at, e.c.from_state, e.c.to_state, e.c.actor, e.c.note).where(e.c.issue_id == issue_id).order_by(e.c.id)
    with engine.connect() as conn:
        return [
            IssueEvent(r.at, IssueState(r.from_state) if r.from_state else None, IssueState(r.to_state), r.actor, r.note)
            for r in conn.execute(query)
        ]


@dataclass(frozen=True, slots=True)
class IssueSummary:
    """An issue as the desk lists it: state, audience and delivery progress."""

    id: int
    kind: str
    key: str
    state: IssueState
    subject: str
    cadence: str
    updated_at: dt.datetime
    send_at: dt.datetime | None
    recipients: int  # ledger rows once started; else the audience a release now would reach
    sent: int
    failed: int

    @property
    def started(self) -> bool:
        return self.state in (IssueState.SENDING, IssueState.SENT)


def _summaries(conn: Connection, query: Any) -> list[IssueSummary]:
    rows = conn.execute(query).all()
    ids = [r.id for r in rows]
    counts: dict[int, dict[str, int]] = {}
    if ids:
        grouped = conn.execute(
            sa.select(deliveries.c.issue_id, deliveries.c.state, sa.func.count())
            .where(deliveries.c.issue_id.in_(ids))
            .group_by(deliveries.c.issue_id, deliveries.c.state)
        )
        for issue_id, state, n in grouped:
            counts.setdefault(issue_id, {})[state] = n
    audiences = {c: audience_size(conn, c) for c in {r.cadence or Cadence.INSTANT.value for r in rows}}
    out = []
    for r in rows:
        cadence = r.cadence or Cadence.INSTANT.value
        mine = counts.get(r.id, {})
        started = r.state in (IssueState.SENDING, IssueState.SENT)
        recipients, sent, failed = sum(mine.values()), mine.get(DeliveryState.SENT, 0), mine.get(DeliveryState.FAILED, 0)
        if r.ledger_pruned_at is not None:  # its rows were pruned: the counts kept on the issue stand
            recipients, sent, failed = r.total_recipients or 0, r.total_sent or 0, r.total_failed or 0
        out.append(IssueSummary(
            r.id, r.kind, r.key, IssueState(r.state), r.subject, cadence, r.updated_at, r.send_at,
            recipients if started else audiences[cadence], sent, failed,
        ))
    return out


_SUMMARY = (
    issues.c.id, issues.c.kind, issues.c.key, issues.c.state, issues.c.subject, issues.c.cadence, issues.c.updated_at,
    issues.c.send_at, issues.c.ledger_pruned_at, issues.c.total_recipients, issues.c.total_sent, issues.c.total_failed,
)


def recent_digests(engine: Engine, *, limit: int = 20) -> list[IssueSummary]:
    query = sa.select(*_SUMMARY).where(issues.c.kind == "digest").order_by(issues.c.created_at.desc(), issues.c.id.desc()).limit(limit)
    with engine.connect() as conn:
        return _summaries(conn, query)


def story_summaries(engine: Engine) -> dict[str, IssueSummary]:
    """Every story issue's summary, by slug."""
    query = sa.select(*_SUMMARY).where(issues.c.kind == "story")
    with engine.connect() as conn:
        return {s.key: s for s in _summaries(conn, query)}


def issue_id(engine: Engine, kind: str, key: str) -> int | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(issues.c.id).where(issues.c.kind == kind, issues.c.key == key)).first()
    return None if row is None else int(row.id)
