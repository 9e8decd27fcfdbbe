"""Schema migrations (Alembic): where a store stands, bringing it to head, refusing an old one.

A fresh database is built from ``schema.metadata`` and stamped at head in
one transaction (Alembic's recipe for a new database: running every
revision would build the same tables, and importing Alembic alone costs a
third of a second at every start); the tests build one by the revisions
too and check both equal ``schema.metadata``. An existing one is never
altered behind the operator's back except by ``publisher migrate``. Stores
made before migrations existed (``create_all`` plus the in-place
``engine.legacy_upgrade``) carry no ``alembic_version``:
``migrate`` finishes their old upgrade, stamps them at the baseline and
goes on from there.

Adding a migration: change ``schema.py``, then add
``migrations/versions/NNNN_what.py`` with ``down_revision`` set to the
current head (copy ``0002_workers.py``; ``script.py.mako`` is the template)
and explicit ``op.*`` calls, and set :data:`HEAD` to its revision;
``tests/store/test_migrations.py`` fails until the migrated schema equals
``schema.metadata`` on SQLite and PostgreSQL.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

import sqlalchemy as sa

from ..core.errors import StoreError

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

BASELINE = "0001_baseline"
# The newest revision, known without Alembic: a start reads the store's
# stamp with one query and compares it with this. tests/store/test_migrations.py
# fails until it names the head of migrations/versions.
HEAD = "0005_stories_source_last"
VERSION_TABLE = "alembic_version"  # Alembic's default, as migrations/env.py leaves it
# Serialises migrations of one PostgreSQL database (two processes starting on an empty one).
_PG_MIGRATE_LOCK = 0x7075626C6D67  # "publmg"


class SchemaOutOfDate(StoreError):
    """The store's schema is behind this version of publisher."""


def _alembic_config(conn: sa.Connection) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(resources.files("publisher.store") / "migrations"))
    cfg.attributes["connection"] = conn
    return cfg


def head() -> str:
    """The head revision as Alembic finds it in migrations/versions (:data:`HEAD` is its copy)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config(None))  # type: ignore[arg-type]
    rev = script.get_current_head()
    assert rev is not None
    return rev


def current(conn: sa.Connection) -> str | None:
    """The store's revision; ``None`` for an empty database or one made before migrations."""
    return _current(conn, set(sa.inspect(conn).get_table_names()))


def _current(conn: sa.Connection, tables: set[str]) -> str | None:
    # What Alembic's MigrationContext.get_current_revision reads, read with one query.
    if VERSION_TABLE not in tables:
        return None
    stamps = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(stamps) > 1:
        raise StoreError(f"the store is stamped with several schema revisions ({', '.join(sorted(stamps))}); "
                         "`publisher migrate` cannot tell which holds")
    return stamps[0] if stamps else None


def _has_tables(conn: sa.Connection) -> bool:
    return "issues" in sa.inspect(conn).get_table_names()


def state(engine: sa.Engine) -> tuple[str | None, bool]:
    """``(revision, has_tables)``."""
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        return _current(conn, tables), "issues" in tables


def create_fresh(engine: sa.Engine) -> bool:
    """An empty store built at head: ``schema.metadata``'s tables and the head stamp, in one
    transaction. False (nothing done) when the store was no longer empty (another process)."""
    from .schema import metadata

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATE_LOCK})
        tables = set(sa.inspect(conn).get_table_names())
        if "issues" in tables or VERSION_TABLE in tables:
            return False
        metadata.create_all(conn)
        stamp = version_table()
        stamp.create(conn)
        conn.execute(stamp.insert().values(version_num=HEAD))
    return True


def version_table() -> sa.Table:
    """Alembic's version table as its migration context creates it (the tests compare the two)."""
    return sa.Table(VERSION_TABLE, sa.MetaData(), sa.Column("version_num", sa.String(32), nullable=False),
                    sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"))


def upgrade(engine: sa.Engine) -> tuple[str | None, str]:
    """Bring the store to head by its revisions; ``(revision before, head)``."""
    from alembic.command import upgrade as _alembic_upgrade
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from .engine import legacy_upgrade

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATE_LOCK})
        before = current(conn)
        cfg = _alembic_config(conn)
        if before is None and _has_tables(conn):
            # Made by create_all before migrations: finish its old upgrade, call it the baseline.
            legacy_upgrade(conn)
            MigrationContext.configure(conn).stamp(ScriptDirectory.from_config(cfg), BASELINE)
        _alembic_upgrade(cfg, "head")
        return before, head()


def ensure_current(engine: sa.Engine) -> None:
    """Raise :class:`SchemaOutOfDate` (naming the command to run) unless the store is at head."""
    rev, has_tables = state(engine)
    want = HEAD
    if rev == want:
        return
    where = engine.url.render_as_string(hide_password=True)
    if rev is None and has_tables:
        raise SchemaOutOfDate(f"store {where} predates schema migrations: run `publisher migrate` first")
    raise SchemaOutOfDate(f"store {where} is at schema {rev or '(empty)'}, this publisher needs {want}: run `publisher migrate` first")
