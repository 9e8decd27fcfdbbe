"""Privacy: the state folder and database files are private; the access log keeps no link tokens."""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from pathlib import Path

import httpx
import pytest

from publisher import store
from publisher.mail import tokens
from publisher.publish.pipeline import Pipeline
from publisher.store import subscribers as subscribers_store
from publisher.web import server as web_server

from tests.support.desk import NOW, make_config, write_public
from tests.support.ports import free_port


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_database_files_are_0600_in_a_0700_folder(tmp_path: Path) -> None:
    os.umask(0o022)
    db = tmp_path / "fresh-state" / "publisher.db"
    engine = store.connect(f"sqlite:///{db}")
    subscribers_store.add_subscriber(engine, "reader@example.org", "daily", status="active", now=NOW)
    with engine.connect() as conn:  # keep a connection open so -wal and -shm exist
        assert subscribers_store.find_subscriber(engine, "reader@example.org") is not None
        files = [db, db.with_name("publisher.db-wal"), db.with_name("publisher.db-shm")]
        assert all(p.exists() for p in files), sorted(p.name for p in db.parent.iterdir())
        assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
        conn.close()
    engine.dispose()
    assert mode(db.parent) == 0o700


def test_an_older_world_readable_database_is_tightened(tmp_path: Path) -> None:
    db = tmp_path / "publisher.db"
    store.connect(f"sqlite:///{db}").dispose()
    os.chmod(db, 0o644)
    store.connect(f"sqlite:///{db}").dispose()
    assert mode(db) == 0o600


def test_generated_signing_key_folder_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PUBLISHER_SIGNING_KEY", raising=False)
    os.umask(0o022)
    cfg = make_config(tmp_path / "project")
    cfg = cfg.with_paths(state=tmp_path / "project" / "new-state")
    tokens.signing_key(cfg)
    assert mode(cfg.paths.state) == 0o700


def test_access_log_redacts_link_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PUBLISHER_SIGNING_KEY", "k" * 64)
    monkeypatch.delenv("PUBLISHER_DESK_PASSWORD", raising=False)
    cfg = make_config(tmp_path)
    write_public(cfg)
    engine = store.connect(cfg.store_url)
    port = free_port()
    server = web_server.make_server(cfg, engine, Pipeline(cfg, engine), host="127.0.0.1", port=port, access_log=True)
    thread = threading.Thread(target=server.run, daemon=True)
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        secret = "SECRETTOKEN123"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            for path in (f"/confirm?t={secret}", f"/unsubscribe?t={secret}", f"/desk/login?token={secret}", f"/webhook/bounces?sig={secret}", "/feed.atom?kept=1"):
                c.get(path)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        engine.dispose()
    lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert len(lines) == 5, lines
    assert not any(secret in line for line in lines), lines
    assert any("/confirm?[redacted]" in line for line in lines)
    assert any("/feed.atom?kept=1" in line for line in lines)  # other query strings stay for debugging
