"""The state database: schema (SQLAlchemy Core) and the story/issue queries.

SQLite by default (a file in the state folder, WAL mode so the web app can
read while the scheduler writes); any SQLAlchemy URL works. Subscriber and
delivery queries live in :mod:`publisher.ledger`, over the same tables.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .errors import StoreError

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
    sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
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
    sa.Column("source", sa.LargeBinary, nullable=False),  # raw bytes of the last good brief
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),  # last content change
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),  # file gone
    sa.Column("error", sa.Text, nullable=True),
    # Newline-framed tag and entity slugs ("\nai\nchips\n") so the pipeline
    # can find a tag feed's newest stories without parsing every brief.
    sa.Column("feed_tags", sa.Text, nullable=False, default=""),
    sa.Index("ix_stories_published", "published_at"),
)

# Email issues: one per story (kind=story, key=slug) and one per digest
# period (kind=digest, key=period). (kind, key) is unique, which makes
# creating an issue idempotent.
issues = sa.Table(
    "issues",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),  # story | digest
    sa.Column("key", sa.String, nullable=False),  # slug, or digest period key
    # draft | awaiting_approval | approved | held | sending | sent | error
    sa.Column("state", sa.String(24), nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("preheader", sa.Text, nullable=False, default=""),
    sa.Column("html", sa.Text, nullable=False),  # personalisation placeholders left in
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("slugs", sa.Text, nullable=False, default=""),  # digest: comma-separated story slugs
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.UniqueConstraint("kind", "key", name="uq_issue_kind_key"),
)

subscribers = sa.Table(
    "subscribers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("email", sa.String, nullable=False, unique=True),  # normalised
    sa.Column("status", sa.String(16), nullable=False),  # pending | active | unsubscribed | bounced
    sa.Column("cadence", sa.String(16), nullable=False),  # instant | daily | weekly
    sa.Column("bounces", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("unsubscribed_at", sa.DateTime(timezone=True), nullable=True),
)

# The ledger: one row per (issue, recipient). A row is marked sent only
# after the transport accepted the message, so a crash resumes from here.
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id"), nullable=False),
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # queued | sending | sent | failed
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("claimed_by", sa.String, nullable=True),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("issue_id", "subscriber_id", name="uq_delivery"),
    sa.Index("ix_deliveries_issue_state", "issue_id", "state"),
)

# Small key/value facts the service keeps (e.g. the last digest period).
kv = sa.Table(
    "kv",
    metadata,
    sa.Column("key", sa.String, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the desk read while the scheduler writes; busy_timeout waits
    # out a concurrent writer instead of failing with "database is locked".
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def aware(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)


def get_kv(conn: sa.Connection, key: str) -> str | None:
    return conn.execute(sa.select(kv.c.value).where(kv.c.key == key)).scalar_one_or_none()


def set_kv(conn: sa.Connection, key: str, value: str) -> None:
    if conn.execute(sa.update(kv).where(kv.c.key == key).values(value=value)).rowcount == 0:
        conn.execute(sa.insert(kv).values(key=key, value=value))


def connect(url: str) -> Engine:
    """An engine for ``url`` with the schema created; SQLite folders made as needed."""
    try:
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url)
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        metadata.create_all(engine)
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(f"cannot open store {url}: {exc}") from exc
    return engine
