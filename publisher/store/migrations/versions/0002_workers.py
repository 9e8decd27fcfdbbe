"""Delivery workers: a heartbeat row per ``publisher worker``; the shared send-rate row.

Revision ID: 0002_workers
Revises: 0001_baseline
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from publisher.store.schema import UTCDateTime

revision = "0002_workers"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("host", sa.String, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("heartbeat_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_deliveries_sent_at", "deliveries", ["sent_at"])
    op.create_index("ix_deliveries_claimed_by", "deliveries", ["claimed_by"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_claimed_by", "deliveries")
    op.drop_index("ix_deliveries_sent_at", "deliveries")
    op.drop_table("workers")
