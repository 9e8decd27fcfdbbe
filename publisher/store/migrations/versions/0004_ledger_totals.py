"""Per-issue delivery totals kept on the issue row, so a finished issue's ledger rows can be pruned;
the ledger's issue index ends with the id, so a claim reads the queued rows of an issue in order.

Revision ID: 0004_ledger_totals
Revises: 0003_signups_bounces
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from publisher.store.schema import UTCDateTime

revision = "0004_ledger_totals"
down_revision = "0003_signups_bounces"
branch_labels = None
depends_on = None

_COLUMNS = ("total_recipients", "total_sent", "total_failed", "total_skipped")


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    # Stores made by create_all just before migrations existed may have these already: each only where missing.
    have = {c["name"] for c in inspector.get_columns("issues")}
    # Nullable and without a default: instant on SQLite and PostgreSQL whatever the table's size.
    for name in _COLUMNS:
        if name not in have:
            op.add_column("issues", sa.Column(name, sa.Integer, nullable=True))
    if "ledger_pruned_at" not in have:
        op.add_column("issues", sa.Column("ledger_pruned_at", UTCDateTime, nullable=True))
    index = {i["name"]: i["column_names"] for i in inspector.get_indexes("deliveries")}.get("ix_deliveries_issue_state")
    if index != ["issue_id", "state", "id"]:
        if index is not None:
            op.drop_index("ix_deliveries_issue_state", "deliveries")
        op.create_index("ix_deliveries_issue_state", "deliveries", ["issue_id", "state", "id"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_issue_state", "deliveries")
    op.create_index("ix_deliveries_issue_state", "deliveries", ["issue_id", "state"])
    with op.batch_alter_table("issues") as batch:  # SQLite drops columns by copying the table
        for name in (*_COLUMNS, "ledger_pruned_at"):
            batch.drop_column(name)
