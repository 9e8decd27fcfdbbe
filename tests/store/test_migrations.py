"""Migrations: a fresh store equals schema.py, an old store upgrades in place, old schemas are refused."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner

from publisher.cli import main
from publisher.core.errors import StoreError
from publisher.store import connect, get_kv, migrate, set_kv
from publisher.store.schema import metadata
from publisher.store import subscribers as subscribers_store
from tests.support.project import make_project

T0 = dt.datetime(2026, 11, 30, 12, tzinfo=dt.timezone.utc)


def test_a_fresh_store_is_at_head_and_matches_the_schema(store_url: str) -> None:
    engine = connect(store_url)
    with engine.connect() as conn:
        assert migrate.current(conn) == migrate.head()
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    migrate.ensure_current(engine)


def test_the_revisions_build_an_empty_store_into_the_schema(store_url: str, second_store_url: str) -> None:
    """A fresh store is made from schema.py and stamped; the revisions must make the same one, stamp
    and version table included (a change to schema.py without its migration shows up here; see
    store/migrate.py for the recipe)."""
    connect(store_url)  # made from schema.py
    if second_store_url.startswith("sqlite:///"):
        Path(second_store_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    by_revisions = sa.create_engine(second_store_url)
    assert migrate.upgrade(by_revisions) == (None, migrate.head())
    shapes = []
    for engine in (sa.create_engine(store_url), by_revisions):
        with engine.connect() as conn:
            assert migrate.current(conn) == migrate.head()
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
            inspector = sa.inspect(conn)
            shapes.append(([(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(migrate.VERSION_TABLE)],
                           inspector.get_pk_constraint(migrate.VERSION_TABLE)))
            if engine.dialect.name == "sqlite":  # the blob last: see migration 0005
                assert [c["name"] for c in inspector.get_columns("stories")][-1] == "source"
        engine.dispose()
    assert shapes[0] == shapes[1]


def test_an_sqlite_store_gets_the_stories_source_last_with_its_rows(tmp_path: Path) -> None:
    """Migration 0005 rebuilds the stories table (SQLite reads a column after a 9 KB value from its overflow pages)."""
    from alembic.command import upgrade as alembic_upgrade

    (tmp_path / "state").mkdir()
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'state' / 'p.db'}")
    with engine.begin() as conn:
        alembic_upgrade(migrate._alembic_config(conn), "0004_ledger_totals")
    row = {"slug": "s-1", "path": "a/s-1.md", "title": "T", "status": "published", "source": b"\x00brief" * 2000,
           "content_hash": "h", "published_at": "2026-11-30 12:00:00.000000", "updated_at": "2026-11-30 12:00:00.000000",
           "created_at": "2026-11-30 12:00:00.000000", "deleted_at": None, "error": None, "feed_tags": "\nai\n"}
    with engine.begin() as conn:
        before = [c["name"] for c in sa.inspect(conn).get_columns("stories")]
        assert before[-1] != "source"
        conn.execute(sa.text(f"INSERT INTO stories ({', '.join(row)}) VALUES ({', '.join(':' + k for k in row)})"), row)
    assert migrate.upgrade(engine) == ("0004_ledger_totals", migrate.head())
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        assert sorted(c["name"] for c in inspector.get_columns("stories")) == sorted(before)
        assert [c["name"] for c in inspector.get_columns("stories")][-1] == "source"
        assert "ix_stories_published" in {i["name"] for i in inspector.get_indexes("stories")}
        got = conn.execute(sa.text("SELECT * FROM stories")).mappings().one()
        assert dict(got) == row
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_head_names_the_newest_revision() -> None:
    assert migrate.HEAD == migrate.head()


def test_opening_a_store_does_not_import_alembic(tmp_path: Path) -> None:
    """A third of a second at every start (each CLI command, each build): Alembic is imported only to
    migrate an existing store, never to make or open one."""
    import subprocess
    import sys

    code = ("import sys; from publisher.store import connect, migrate; url = sys.argv[1]; connect(url); connect(url); "
            "e = connect(url); migrate.ensure_current(e); print(sorted(m for m in sys.modules if m.startswith('alembic')))")
    out = subprocess.run([sys.executable, "-c", code, f"sqlite:///{tmp_path / 'state' / 'p.db'}"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_store_stamped_twice_is_refused_by_name(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state' / 'p.db'}"
    engine = connect(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO {migrate.VERSION_TABLE} VALUES ('0003_signups_bounces')"))
    with pytest.raises(StoreError, match="several schema revisions"):
        migrate.state(engine)


def _old_store(url: str) -> sa.Engine:
    """A store as publisher made them before migrations: create_all, with the old issues.slugs column."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)
    old = sa.MetaData()
    for table in metadata.sorted_tables:
        if table.name not in ("workers", "issue_events"):
            table.to_metadata(old)
    issues = old.tables["issues"]
    issues.append_column(sa.Column("slugs", sa.Text, nullable=False, server_default=""))
    for name in ("send_at", "cadence"):
        issues._columns.remove(issues.c[name])  # type: ignore[attr-defined]
    for index in list(old.tables["deliveries"].indexes):
        if index.name in ("ix_deliveries_sent_at", "ix_deliveries_claimed_by"):
            old.tables["deliveries"].indexes.discard(index)
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(old.tables["kv"].insert().values(key="digest", value="2026-W48"))
        conn.execute(issues.insert().values(
            kind="digest", key="2026-W48", state="sent", subject="s", preheader="", html="h", text="t",
            content_hash="x", created_at=T0, updated_at=T0, slugs="a,b",
        ))
    engine.dispose()
    return engine


def test_a_store_made_before_migrations_is_refused_then_upgraded_in_place(tmp_path: Path, store_url: str) -> None:
    _old_store(store_url)
    engine = connect(store_url)  # opening does not alter it
    with pytest.raises(migrate.SchemaOutOfDate, match="run `publisher migrate`"):
        migrate.ensure_current(engine)
    cfg_path = make_project(tmp_path, samples=False).source
    runner = CliRunner()
    refused = runner.invoke(main, ["run", "--once", "--config", str(cfg_path)])
    assert refused.exit_code == 1 and "run `publisher migrate` first" in refused.output
    done = runner.invoke(main, ["migrate", "--config", str(cfg_path)])
    assert done.exit_code == 0, done.output
    assert f"at {migrate.head()}" in done.output
    migrate.ensure_current(engine)
    with engine.connect() as conn:
        assert get_kv(conn, "digest") == "2026-W48"
        row = conn.execute(sa.text("SELECT cadence FROM issues WHERE key = '2026-W48'")).one()
        assert row.cadence == "weekly"
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    again = runner.invoke(main, ["migrate", "--config", str(cfg_path)])
    assert again.exit_code == 0 and "already at" in again.output


def test_concurrent_upserts_never_collide(store_url: str) -> None:
    engine = connect(store_url)
    errors: list[BaseException] = []
    created: list[bool] = []
    start = threading.Barrier(8)

    def hammer(n: int) -> None:
        try:
            start.wait()
            for i in range(40):
                with engine.begin() as conn:
                    set_kv(conn, f"k{i % 5}", f"{n}:{i}")
                _sub, made = subscribers_store.add_subscriber(engine, f"r{i}@example.org", "instant", status="active", now=T0)
                created.append(made)
        except BaseException as exc:  # collected: the assertion names it
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert created.count(True) == 40  # each address made exactly once
