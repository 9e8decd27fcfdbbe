"""Sign-ups and throttle counts (web hardening), bounce and complaint events, the stories of each digest.

Revision ID: 0003_signups_bounces
Revises: 0002_workers
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from publisher.store.schema import UTCDateTime

revision = "0003_signups_bounces"
down_revision = "0002_workers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Stores made by create_all just before migrations existed may have some
    # of these tables already: each is made only where it is missing.
    have = set(sa.inspect(op.get_bind()).get_table_names())
    if "throttle_hits" not in have:
        _throttle_hits()
    if "signups" not in have:
        _signups()
    if "bounces" not in have:
        _bounces()
    if "issue_stories" not in have:
        _issue_stories()


def _throttle_hits() -> None:
    op.create_table(
        "throttle_hits",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("bucket", sa.String(32), nullable=False),
        sa.Column("key", sa.String, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_throttle_bucket_key_at", "throttle_hits", ["bucket", "key", "at"])


def _signups() -> None:
    op.create_table(
        "signups",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), nullable=False),
        sa.Column("cadence", sa.String(16), nullable=False),
        sa.Column("requested_at", UTCDateTime, nullable=False),
        sa.Column("mailed_at", UTCDateTime, nullable=True),
        sa.Column("confirmed_at", UTCDateTime, nullable=True),
    )
    op.create_index("ix_signups_subscriber", "signups", ["subscriber_id", "id"])


def _bounces() -> None:
    op.create_table(
        "bounces",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), nullable=True),
        sa.Column("email", sa.String, nullable=False),
        sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id"), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("raw_ref", sa.String, nullable=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("source", "raw_ref", "email", name="uq_bounce_event"),
    )
    op.create_index("ix_bounces_issue_kind", "bounces", ["issue_id", "kind"])
    op.create_index("ix_bounces_subscriber", "bounces", ["subscriber_id"])


def _issue_stories() -> None:
    op.create_table(
        "issue_stories",
        sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("slug", sa.String, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("issue_stories")
    op.drop_index("ix_bounces_subscriber", "bounces")
    op.drop_index("ix_bounces_issue_kind", "bounces")
    op.drop_table("bounces")
    op.drop_index("ix_signups_subscriber", "signups")
    op.drop_table("signups")
    op.drop_index("ix_throttle_bucket_key_at", "throttle_hits")
    op.drop_table("throttle_hits")
