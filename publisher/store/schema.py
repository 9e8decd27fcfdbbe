"""The schema (SQLAlchemy Core): every table of the state database, in one place."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend.

    SQLite keeps no zone and hands back naive values; everything stored here
    is UTC by construction, so reading attaches UTC and writing refuses a
    naive value (which would be a bug in the caller, not a time zone guess).
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the store")
        return value.astimezone(dt.timezone.utc)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


metadata = sa.MetaData()

# One row per file seen in briefs/: what the scanner knows, so a restart
# does not republish anything unchanged.
files = sa.Table(
    "files",
    metadata,
    sa.Column("path", sa.String, primary_key=True),  # relative to the briefs folder
    sa.Column("mtime_ns", sa.BigInteger, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("slug", sa.String, nullable=True),  # None while the file fails to parse
    sa.Column("error", sa.Text, nullable=True),  # "path:line: message" of the last failure
    sa.Column("seen_at", UTCDateTime, nullable=False),
)

# One row per story (slug). The last good source stays here when a later
# edit breaks the brief, so the story stays published.
stories = sa.Table(
    "stories",
    metadata,
    sa.Column("slug", sa.String, primary_key=True),
    sa.Column("path", sa.String, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # draft | published
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("published_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),  # last content change
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("deleted_at", UTCDateTime, nullable=True),  # file gone
    sa.Column("error", sa.Text, nullable=True),
    # Newline-framed tag and entity slugs ("\nai\nchips\n") so the pipeline
    # can find a tag feed's newest stories without parsing every brief.
    sa.Column("feed_tags", sa.Text, nullable=False, default=""),
    # Raw bytes of the last good brief. Last: on SQLite a column after a
    # 9 KB value is read from its overflow pages (migration 0005).
    sa.Column("source", sa.LargeBinary, nullable=False),
    sa.Index("ix_stories_published", "published_at"),
)

# Email issues: one per story (kind=story, key=slug) and one per digest
# period (kind=digest, key=period). (kind, key) is unique, which makes
# creating an issue idempotent. States: core.states.IssueState.
issues = sa.Table(
    "issues",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),  # story | digest
    sa.Column("key", sa.String, nullable=False),  # slug, or digest period key
    sa.Column("state", sa.String(24), nullable=False),
    # Who gets it: instant for story issues, the digest's cadence for digests.
    sa.Column("cadence", sa.String(16), nullable=True),
    sa.Column("send_at", UTCDateTime, nullable=True),  # a scheduled issue waits until then
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("preheader", sa.Text, nullable=False, default=""),
    sa.Column("html", sa.Text, nullable=False),  # personalisation placeholders left in
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("approved_at", UTCDateTime, nullable=True),
    sa.Column("sent_at", UTCDateTime, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    # The ledger's counts, kept here when `publisher deliveries prune` deletes
    # a finished issue's delivery rows (ledger_pruned_at says it did).
    sa.Column("total_recipients", sa.Integer, nullable=True),
    sa.Column("total_sent", sa.Integer, nullable=True),
    sa.Column("total_failed", sa.Integer, nullable=True),
    sa.Column("total_skipped", sa.Integer, nullable=True),
    sa.Column("ledger_pruned_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("kind", "key", name="uq_issue_kind_key"),
)

# The stories a digest carries, in the order it shows them (its web page is
# rebuilt from these when public/ is rebuilt).
issue_stories = sa.Table(
    "issue_stories",
    metadata,
    sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("slug", sa.String, nullable=False),
)

# Every move of an issue's state: who (a CLI user, a desk session, the
# service) and when, so the desk can show an issue's history.
issue_events = sa.Table(
    "issue_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id"), nullable=False),
    sa.Column("from_state", sa.String(24), nullable=True),  # None: the issue was created
    sa.Column("to_state", sa.String(24), nullable=False),
    sa.Column("actor", sa.String, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("note", sa.Text, nullable=True),
    sa.Index("ix_issue_events_issue", "issue_id"),
)

subscribers = sa.Table(
    "subscribers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("email", sa.String, nullable=False, unique=True),  # normalised
    sa.Column("status", sa.String(16), nullable=False),  # core.states.SubscriberStatus
    sa.Column("cadence", sa.String(16), nullable=False),  # core.states.Cadence
    sa.Column("bounces", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("confirmed_at", UTCDateTime, nullable=True),
    sa.Column("unsubscribed_at", UTCDateTime, nullable=True),
)

# The ledger: one row per (issue, recipient). A row is marked sent only
# after the transport accepted the message, so a crash resumes from here.
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id"), nullable=False),
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # core.states.DeliveryState
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("next_attempt_at", UTCDateTime, nullable=True),
    sa.Column("claimed_at", UTCDateTime, nullable=True),
    sa.Column("claimed_by", sa.String, nullable=True),
    sa.Column("sent_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("issue_id", "subscriber_id", name="uq_delivery"),
    # id last: a claim's "queued rows of this issue in ledger order" is a range of this index
    # (PostgreSQL orders equal keys by heap position, not id; SQLite appends the rowid anyway).
    sa.Index("ix_deliveries_issue_state", "issue_id", "state", "id"),
)

# Every bounce, complaint and reactivation, wherever it came from: the SMTP
# session (source "smtp"), a DSN (source "dsn"), a provider webhook ("ses",
# "postmark", "mailgun", "sendgrid") or an operator ("cli"). kind: hard,
# soft, complaint, unknown or reactivated. raw_ref points back at the
# evidence (a Maildir key, an SNS MessageId, a provider event id).
bounces = sa.Table(
    "bounces",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), nullable=True),
    sa.Column("email", sa.String, nullable=False),
    sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id"), nullable=True),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, default=""),
    sa.Column("raw_ref", sa.String, nullable=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_bounces_issue_kind", "issue_id", "kind"),
    sa.Index("ix_bounces_subscriber", "subscriber_id"),
    sa.UniqueConstraint("source", "raw_ref", "email", name="uq_bounce_event"),
)

# Small key/value facts the service keeps (e.g. the last digest period).
kv = sa.Table(
    "kv",
    metadata,
    sa.Column("key", sa.String, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# Attempts counted by the web app's throttles (failed sign-ins, sign-ups),
# one row each, pruned past the window: shared by every serving process.
throttle_hits = sa.Table(
    "throttle_hits",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("bucket", sa.String(32), nullable=False),  # e.g. desk-signin, signup-client
    sa.Column("key", sa.String, nullable=False),  # a peer address or network, or an address digest
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_throttle_bucket_key_at", "bucket", "key", "at"),
)

# Every sign-up through the form, kept as history: a confirm link names one
# row, and only the newest mailed row of a subscriber can be confirmed, only
# within its age and only if the reader has not unsubscribed since.
signups = sa.Table(
    "signups",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), nullable=False),
    sa.Column("cadence", sa.String(16), nullable=False),  # what the reader chose this time
    sa.Column("requested_at", UTCDateTime, nullable=False),
    sa.Column("mailed_at", UTCDateTime, nullable=True),  # None: within the resend window, no mail
    sa.Column("confirmed_at", UTCDateTime, nullable=True),
    sa.Index("ix_signups_subscriber", "subscriber_id", "id"),
)

# Sending: the send-rate window counts sent rows by time; recovery finds a worker's claims.
sa.Index("ix_deliveries_sent_at", deliveries.c.sent_at)
sa.Index("ix_deliveries_claimed_by", deliveries.c.claimed_by)

# One row per running ``publisher worker``, beaten every few seconds: a claim
# whose worker has not beaten within ``delivery.lease`` is requeued by any other.
workers = sa.Table(
    "workers",
    metadata,
    sa.Column("id", sa.String, primary_key=True),  # the claim tag prefix, host:pid:random
    sa.Column("host", sa.String, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("heartbeat_at", UTCDateTime, nullable=False),
)
