"""Opening the store: an engine with the schema in place, and the small key/value facts.

SQLite by default (a file in the state folder, WAL mode so the web app can
read while the scheduler writes); any SQLAlchemy URL works.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from ..core.errors import StoreError
from .schema import kv, metadata

# The types the rooms above hold and pass back in, without importing SQLAlchemy.
Engine = sa.Engine
Connection = sa.Connection
# What a failing database raises (a full disk under state/, a lost server), for
# callers that isolate one file's transaction from the next.
DatabaseFailure = sa.exc.SQLAlchemyError


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the desk read while the scheduler writes; busy_timeout waits
    # out a concurrent writer instead of failing with "database is locked".
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    # 16 MB of page cache instead of 2: a build's inserts walk the stories
    # table's indexes, and with 2 MB SQLite read the same pages back from the
    # file (14 pread calls per brief): 0.3 s of a 10k build's parent CPU.
    cur.execute("PRAGMA cache_size=-16000")
    cur.close()


def columns_types(conn: Connection) -> dict[str, Any]:
    return {c["name"]: c["type"] for c in sa.inspect(conn).get_columns("issues")}


def legacy_upgrade(conn: Connection) -> None:
    """Bring a store made by ``create_all`` before migrations to the baseline, in place.

    Only ``store.migrate`` calls this, once, before stamping such a store at
    the baseline revision; every later change is an Alembic migration.
    """
    columns = {c["name"] for c in sa.inspect(conn).get_columns("issues")}
    # issues.slugs (comma-separated digest members) was written and never
    # read; stores made before it went still carry it as NOT NULL, which
    # would refuse every new issue row.
    if "slugs" in columns:
        conn.execute(sa.text("ALTER TABLE issues DROP COLUMN slugs"))
    stamp = sa.DateTime(timezone=True).compile(dialect=conn.dialect)
    if "send_at" not in columns:
        conn.execute(sa.text(f"ALTER TABLE issues ADD COLUMN send_at {stamp}"))
    elif conn.dialect.name == "postgresql" and not getattr(columns_types(conn)["send_at"], "timezone", True):
        # Earlier in-place upgrades added it without a zone; the values were UTC.
        conn.execute(sa.text(f"ALTER TABLE issues ALTER COLUMN send_at TYPE {stamp} USING send_at AT TIME ZONE 'UTC'"))
    if "cadence" not in columns:
        # Digests used to be told apart by their period key alone (ISO weeks were weekly).
        conn.execute(sa.text("ALTER TABLE issues ADD COLUMN cadence VARCHAR(16)"))
        conn.execute(sa.text(
            "UPDATE issues SET cadence = CASE WHEN kind = 'story' THEN 'instant' "
            "WHEN key LIKE '%-W%' THEN 'weekly' ELSE 'daily' END"
        ))
    tables = set(sa.inspect(conn).get_table_names())
    if "issue_events" not in tables:
        metadata.tables["issue_events"].create(conn)


def _private_sqlite_file(db: Path) -> None:
    """The folder (when we make it) 0700, the database and its -wal/-shm 0600: subscribers' addresses live there.

    SQLite gives -wal and -shm the database file's mode, so creating the
    database 0600 before SQLite opens it covers them too; files made by an
    older version are tightened here.
    """
    try:
        db.parent.mkdir(parents=True, mode=0o700)
    except FileExistsError:
        pass  # the user's folder, or another process's: left as it is
    else:
        os.chmod(db.parent, 0o700)  # mkdir's mode is filtered by the umask
    if not db.exists():
        os.close(os.open(db, os.O_WRONLY | os.O_CREAT, 0o600))
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        if path.exists() and path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)


def connect(url: str) -> Engine:
    """An engine for ``url``; an empty database gets the whole schema, stamped at head.

    An existing store is never altered here: ``publisher migrate`` does
    that, and ``run``, ``worker`` and ``serve`` refuse an old schema
    (``store.migrate.ensure_current``). SQLite folders (0700) and files
    (0600) are made as needed.
    """
    try:
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            _private_sqlite_file(Path(url.removeprefix("sqlite:///")))
        engine = sa.create_engine(url)
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        from . import migrate

        revision, has_tables = migrate.state(engine)
        if revision is None and not has_tables and not migrate.create_fresh(engine):
            migrate.upgrade(engine)  # made meanwhile by another process: to head, if it is not there
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        raise StoreError(f"cannot open store {url}: {exc}") from exc
    return engine


def dialect_insert(conn: Connection, table: sa.Table) -> Any:
    """The dialect's own INSERT (it has ON CONFLICT), or None on a backend without one."""
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    if conn.dialect.name == "postgresql":
        # Imported here: the dialect costs 45 ms at every start on SQLite.
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    return None


def _dialect_insert(conn: Connection, table: sa.Table, values: dict[str, Any]) -> Any:
    stmt = dialect_insert(conn, table)
    return None if stmt is None else stmt.values(**values)


def upsert(conn: Connection, table: sa.Table, values: dict[str, Any], key: list[str], update: list[str]) -> None:
    """INSERT … ON CONFLICT (key) DO UPDATE: one statement, no read-then-write race."""
    stmt = _dialect_insert(conn, table, values)
    if stmt is None:  # pragma: no cover - other backends keep the portable two-step form
        if conn.execute(sa.update(table).where(*[table.c[k] == values[k] for k in key]).values({c: values[c] for c in update})).rowcount == 0:
            conn.execute(sa.insert(table).values(**values))
        return
    conn.execute(stmt.on_conflict_do_update(index_elements=key, set_={c: stmt.excluded[c] for c in update}))


def insert_ignore(conn: Connection, table: sa.Table, values: dict[str, Any], key: list[str]) -> bool:
    """INSERT … ON CONFLICT (key) DO NOTHING; True if this call made the row.

    The answer comes from RETURNING, not rowcount (drivers disagree about
    rowcount), and a concurrent insert of the same key is not an error.
    """
    stmt = _dialect_insert(conn, table, values)
    if stmt is None:  # pragma: no cover - other backends keep the portable two-step form
        if conn.execute(sa.select(*[table.c[k] for k in key]).where(*[table.c[k] == values[k] for k in key])).first():
            return False
        conn.execute(sa.insert(table).values(**values))
        return True
    pk = list(table.primary_key.columns)
    return conn.execute(stmt.on_conflict_do_nothing(index_elements=key).returning(*pk)).first() is not None


def get_kv(conn: Connection, key: str) -> str | None:
    return conn.execute(sa.select(kv.c.value).where(kv.c.key == key)).scalar_one_or_none()


def set_kv(conn: Connection, key: str, value: str) -> None:
    upsert(conn, kv, {"key": key, "value": value}, ["key"], ["value"])


def delete_kv(conn: Connection, key: str) -> None:
    conn.execute(sa.delete(kv).where(kv.c.key == key))
