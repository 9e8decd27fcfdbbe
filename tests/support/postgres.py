"""A throwaway PostgreSQL server the tests start themselves (as pytest-postgresql does).

Debian's PostgreSQL 15 binaries: ``initdb`` into a temporary folder (owned by
the ``postgres`` user when the tests run as root, since the server refuses
to run as root), ``pg_ctl start`` on a free loopback port with its unix
socket in the same folder, one fresh database per test. Without the
binaries the PostgreSQL half of each parametrized test is skipped (``.ci/run``
installs them).
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .ports import free_port

BIN = Path(os.environ.get("PUBLISHER_PG_BIN", "/usr/lib/postgresql/15/bin"))
BACKENDS = ["sqlite", "postgresql"]
_counter = itertools.count()


def available() -> bool:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return False
    return (BIN / "initdb").exists() and (BIN / "pg_ctl").exists()


@dataclass(frozen=True)
class PgServer:
    port: int
    folder: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "t") -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(_counter)}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _server_uid() -> int | None:
    """PostgreSQL refuses to run as root: as root, run its binaries as ``postgres``."""
    return pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else None


def _run(cmd: list[str], uid: int | None, **kw: object) -> subprocess.CompletedProcess[str]:
    def demote() -> None:
        if uid is not None:
            entry = pwd.getpwuid(uid)
            os.setgid(entry.pw_gid)
            os.setuid(uid)

    return subprocess.run(cmd, preexec_fn=demote, check=True, capture_output=True, text=True, **kw)  # type: ignore[call-overload,no-any-return]


def start_server(max_connections: int = 200) -> Iterator[PgServer]:
    """initdb + pg_ctl start; stops the server and removes the folder when the generator closes."""
    uid = _server_uid()
    folder = Path(tempfile.mkdtemp(prefix="publisher-pg-"))
    if uid is not None:
        os.chown(folder, uid, -1)
    data = folder / "data"
    port = free_port()
    try:
        _run([str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"], uid)
        opts = (
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
            f"-c full_page_writes=off -c max_connections={max_connections} -c shared_buffers=64MB"
        )
        _run([str(BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(folder / "log"), "-w", "start"], uid, timeout=60)
        try:
            yield PgServer(port, folder)
        finally:
            _run([str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], uid, timeout=60)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    if not available():
        pytest.skip(f"PostgreSQL binaries ({BIN}) or psycopg not installed")
    yield from start_server()


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Each test that asks for it runs on SQLite and on PostgreSQL; configs pick it up from PUBLISHER_STORE_URL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state' / 'publisher.db'}"
        monkeypatch.setenv("PUBLISHER_STORE_URL", url)
        yield url
        return
    server: PgServer = request.getfixturevalue("pg_server")
    url = server.create_database()
    monkeypatch.setenv("PUBLISHER_STORE_URL", url)
    try:
        yield url
    finally:
        # Engines the test left open hold pooled connections: WITH (FORCE) ends them.
        server.drop_database(url)


@pytest.fixture
def second_store_url(store_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A second, empty store on the same backend as ``store_url`` (for copy-between-stores tests)."""
    if store_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'second' / 'publisher.db'}"
        return
    server: PgServer = request.getfixturevalue("pg_server")
    url = server.create_database("second")
    try:
        yield url
    finally:
        server.drop_database(url)
