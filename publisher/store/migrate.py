"""Schema migrations (Alembic): where a store stands, bringing it to head, refusing an old one.

A fresh database is built by running every revision (the baseline first);
an existing one is never altered behind the operator's back except by
``publisher migrate``. Stores made before migrations existed (``create_all``
plus the in-place ``engine.legacy_upgrade``) carry no ``alembic_version``:
``migrate`` finishes their old upgrade, stamps them at the baseline and
goes on from there.

Adding a migration: change ``schema.py``, then add
``migrations/versions/NNNN_what.py`` with ``down_revision`` set to the
current head (copy ``0002_workers.py``; ``script.py.mako`` is the template)
and explicit ``op.*`` calls; ``tests/store/test_migrations.py`` fails until
the migrated schema equals ``schema.metadata`` on SQLite and PostgreSQL.
"""

from __future__ import annotations

from importlib import resources

import sqlalchemy as sa
from alembic.command import upgrade as _alembic_upgrade
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from ..core.errors import StoreError

BASELINE = "0001_baseline"
# Serialises migrations of one PostgreSQL database (two processes starting on an empty one).
_PG_MIGRATE_LOCK = 0x7075626C6D67  # "publmg"


class SchemaOutOfDate(StoreError):
    """The store's schema is behind this version of publisher."""


def _alembic_config(conn: sa.Connection) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(resources.files("publisher.store") / "migrations"))
    cfg.attributes["connection"] = conn
    return cfg


def head() -> str:
    script = ScriptDirectory.from_config(_alembic_config(None))  # type: ignore[arg-type]
    rev = script.get_current_head()
    assert rev is not None
    return rev


def current(conn: sa.Connection) -> str | None:
    """The store's revision; ``None`` for an empty database or one made before migrations."""
    return MigrationContext.configure(conn).get_current_revision()


def _has_tables(conn: sa.Connection) -> bool:
    return "issues" in sa.inspect(conn).get_table_names()


def state(engine: sa.Engine) -> tuple[str | None, bool]:
    """``(revision, has_tables)``."""
    with engine.connect() as conn:
        return current(conn), _has_tables(conn)


def upgrade(engine: sa.Engine) -> tuple[str | None, str]:
    """Bring the store to head; ``(revision before, head)``."""
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
    want = head()
    if rev == want:
        return
    where = engine.url.render_as_string(hide_password=True)
    if rev is None and has_tables:
        raise SchemaOutOfDate(f"store {where} predates schema migrations: run `publisher migrate` first")
    raise SchemaOutOfDate(f"store {where} is at schema {rev or '(empty)'}, this publisher needs {want}: run `publisher migrate` first")
