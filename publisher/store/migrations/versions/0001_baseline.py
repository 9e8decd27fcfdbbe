"""Baseline: the schema as it stood when migrations began (files, stories, issues, events, subscribers, ledger, kv).

Revision ID: 0001_baseline
Revises:
Create Date: 2026-11-30

Written out table by table (not ``metadata.create_all``) so that later edits
of schema.py cannot change what this revision means.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from publisher.store.schema import UTCDateTime

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    _publishing_tables()
    _mailing_tables()


def _publishing_tables() -> None:
    op.create_table(
        "files",
        sa.Column("path", sa.String, primary_key=True),
        sa.Column("mtime_ns", sa.BigInteger, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("slug", sa.String, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("seen_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "stories",
        sa.Column("slug", sa.String, primary_key=True),
        sa.Column("path", sa.String, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.LargeBinary, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("published_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("deleted_at", UTCDateTime, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("feed_tags", sa.Text, nullable=False),
    )
    op.create_index("ix_stories_published", "stories", ["published_at"])
    op.create_table(
        "kv",
        sa.Column("key", sa.String, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )



def _mailing_tables() -> None:
    op.create_table(
        "issues",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key", sa.String, nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("cadence", sa.String(16), nullable=True),
        sa.Column("send_at", UTCDateTime, nullable=True),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("preheader", sa.Text, nullable=False),
        sa.Column("html", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("approved_at", UTCDateTime, nullable=True),
        sa.Column("sent_at", UTCDateTime, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.UniqueConstraint("kind", "key", name="uq_issue_kind_key"),
    )
    op.create_table(
        "issue_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id"), nullable=False),
        sa.Column("from_state", sa.String(24), nullable=True),
        sa.Column("to_state", sa.String(24), nullable=False),
        sa.Column("actor", sa.String, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("note", sa.Text, nullable=True),
    )
    op.create_index("ix_issue_events_issue", "issue_events", ["issue_id"])
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("email", sa.String, nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("cadence", sa.String(16), nullable=False),
        sa.Column("bounces", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("confirmed_at", UTCDateTime, nullable=True),
        sa.Column("unsubscribed_at", UTCDateTime, nullable=True),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id"), nullable=False),
        sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("next_attempt_at", UTCDateTime, nullable=True),
        sa.Column("claimed_at", UTCDateTime, nullable=True),
        sa.Column("claimed_by", sa.String, nullable=True),
        sa.Column("sent_at", UTCDateTime, nullable=True),
        sa.UniqueConstraint("issue_id", "subscriber_id", name="uq_delivery"),
    )
    op.create_index("ix_deliveries_issue_state", "deliveries", ["issue_id", "state"])


def downgrade() -> None:
    for table in ("kv", "deliveries", "subscribers", "issue_events", "issues", "stories", "files"):
        op.drop_table(table)
