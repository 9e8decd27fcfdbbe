"""Pruning the ledger: a finished issue's delivery rows go, its totals stay on the issue row.

The ledger grows by one row per reader per issue (a million readers and a
daily digest: a million rows a day). Once an issue is ``sent`` its rows
are history; what the desk, the newsroom and ``publisher deliveries`` show
of it is counts. :func:`prune` keeps those counts on the issue
(``total_*``, ``ledger_pruned_at``), then deletes the rows in small
batches, each its own short transaction, so neither SQLite's single
writer nor PostgreSQL's row locks are held for long and workers keep
claiming meanwhile.

It is idempotent and resumable: the totals are taken once, in the same
transaction that stamps ``ledger_pruned_at`` (later runs never recount a
half-deleted ledger), and a run interrupted between batches is finished by
the next. Bounces, complaints and unknown outcomes live in ``bounces``
(with their issue id), which pruning leaves alone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..core.states import DeliveryState, IssueState
from .schema import deliveries, issues
from .subscribers import utc


@dataclass(frozen=True, slots=True)
class Totals:
    recipients: int
    sent: int
    failed: int
    skipped: int


@dataclass(frozen=True, slots=True)
class Pruned:
    """One issue's prune: its label, the totals kept, the rows deleted by this run."""

    issue_id: int
    label: str
    totals: Totals
    deleted: int


def kept_totals(row: sa.Row[tuple[object, ...]] | object) -> Totals | None:
    """The totals kept on an issue row (None while its ledger is whole)."""
    if getattr(row, "ledger_pruned_at", None) is None:
        return None
    return Totals(
        int(getattr(row, "total_recipients") or 0), int(getattr(row, "total_sent") or 0),
        int(getattr(row, "total_failed") or 0), int(getattr(row, "total_skipped") or 0),
    )


def issue_totals(engine: Engine, issue_id: int) -> Totals | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(issues).where(issues.c.id == issue_id)).first()
    return None if row is None else kept_totals(row)


def _candidates(conn: Connection, cutoff: dt.datetime) -> list[tuple[int, str, str, str | None]]:
    has_rows = sa.exists().where(deliveries.c.issue_id == issues.c.id)  # ix_deliveries_issue_state
    return [(r.id, r.kind, r.key, r.cadence) for r in conn.execute(
        sa.select(issues.c.id, issues.c.kind, issues.c.key, issues.c.cadence)
        .where(issues.c.state == IssueState.SENT.value, issues.c.sent_at < cutoff, has_rows)
        .order_by(issues.c.sent_at, issues.c.id)
    )]


def _keep_totals(engine: Engine, issue_id: int, *, now: dt.datetime) -> Totals:
    """Count the ledger once and stamp the issue (locked: two prunes at once count once)."""
    with engine.begin() as conn:
        row = conn.execute(sa.select(issues).where(issues.c.id == issue_id).with_for_update()).one()
        kept = kept_totals(row)
        if kept is not None:
            return kept  # an earlier run counted before deleting: its counts stand
        counts: dict[str, int] = dict(conn.execute(
            sa.select(deliveries.c.state, sa.func.count()).where(deliveries.c.issue_id == issue_id)
            .group_by(deliveries.c.state)
        ).all())
        totals = Totals(
            sum(counts.values()), counts.get(DeliveryState.SENT.value, 0),
            counts.get(DeliveryState.FAILED.value, 0), counts.get(DeliveryState.SKIPPED.value, 0),
        )
        conn.execute(issues.update().where(issues.c.id == issue_id).values(
            total_recipients=totals.recipients, total_sent=totals.sent, total_failed=totals.failed,
            total_skipped=totals.skipped, ledger_pruned_at=utc(now),
        ))
    return totals


def _delete_batch(engine: Engine, issue_id: int, batch: int) -> int:
    picked = sa.select(deliveries.c.id).where(deliveries.c.issue_id == issue_id).limit(batch).scalar_subquery()
    with engine.begin() as conn:
        # ANY(ARRAY(…)) on PostgreSQL: the batch's ids by primary key, never a join against the whole ledger.
        which = deliveries.c.id == sa.any_(sa.func.array(picked)) if conn.dialect.name == "postgresql" else deliveries.c.id.in_(picked)
        # Counted from RETURNING: drivers disagree about rowcount.
        return len(conn.execute(deliveries.delete().where(which).returning(deliveries.c.id)).all())


def prune(
    engine: Engine, *, older_than: dt.timedelta, now: dt.datetime, batch: int = 5000,
    on_issue: Callable[[Pruned], None] | None = None,
) -> list[Pruned]:
    """Delete the ledger rows of every issue sent before ``now - older_than``; what each lost."""
    cutoff = utc(now) - older_than
    with engine.connect() as conn:
        found = _candidates(conn, cutoff)
    done: list[Pruned] = []
    for issue_id, kind, key, cadence in found:
        totals = _keep_totals(engine, issue_id, now=now)
        deleted = 0
        while n := _delete_batch(engine, issue_id, max(1, batch)):
            deleted += n
        label = f"story {key}" if kind == "story" else f"{cadence or 'daily'} digest {key}"
        pruned = Pruned(issue_id, label, totals, deleted)
        done.append(pruned)
        if on_issue is not None:
            on_issue(pruned)
    return done
