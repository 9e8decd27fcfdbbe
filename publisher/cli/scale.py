"""Commands for running on a shared store: ``migrate``, ``worker``, ``prune``; the guards on ``run`` and ``serve``.

Kept apart from the other commands (``cli/__init__`` registers them) so the scale-out wiring is
one file: ``run``, ``serve`` and ``worker`` refuse a store whose schema is
behind; ``run`` on PostgreSQL waits as a standby until it holds the leader
lock (``store.leader``).
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import datetime as dt
import re

import click

from ..core import config as config_mod
from ..core.config import Config
from ..core.errors import ConfigError, PublisherError

STANDBY_POLL = 1.0  # seconds between a standby's tries for the leader lock


def _cfg_of(kwargs: dict[str, Any]) -> Config | None:
    path = kwargs.get("config_path") or click.get_current_context().find_root().params.get("config_path")
    path = path or os.environ.get("PUBLISHER_CONFIG")
    try:
        return config_mod.load(path or None)
    except ConfigError:
        return None  # the command itself reports it


def _require_schema(cfg: Config) -> Any:
    from ..store import connect, migrate

    engine = connect(cfg.store_url)
    try:
        migrate.ensure_current(engine)
    except PublisherError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    return engine


@contextmanager
def _leader(cfg: Config, *, once: bool) -> Iterator[None]:
    """Hold the leader lock for the body (PostgreSQL); stand by until it is free."""
    from ..store.leader import Leadership

    lead = Leadership(_require_schema(cfg))
    if not lead.try_acquire():
        if once:
            click.echo(f"another run leads this store ({lead.holder()}): nothing done", err=True)
            sys.exit(0)
        click.echo(f"standing by (leader: {lead.holder()})", err=True)
        while not lead.try_acquire():
            time.sleep(STANDBY_POLL)
        click.echo("leader lock taken: this run now leads", err=True)
    try:
        yield
    finally:
        lead.release()


def _guard(command: click.Command, around: Callable[[Config, dict[str, Any]], Any]) -> None:
    inner = command.callback
    assert inner is not None

    @functools.wraps(inner)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        cfg = _cfg_of(kwargs)
        if cfg is None:
            return inner(*args, **kwargs)
        with around(cfg, kwargs):
            return inner(*args, **kwargs)

    command.callback = guarded


@contextmanager
def _schema_only(cfg: Config, _kwargs: dict[str, Any]) -> Iterator[None]:
    _require_schema(cfg)
    yield


def _run_guard(cfg: Config, kwargs: dict[str, Any]) -> Any:
    return _leader(cfg, once=bool(kwargs.get("once")))


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, help="Config file.")
def migrate(config_path: str | None) -> None:
    """Bring the store's schema up to this version (Alembic); safe to run again."""
    from ..store import connect
    from ..store import migrate as migrations

    cfg = _load(config_path)
    engine = connect(cfg.store_url)
    before, head = migrations.upgrade(engine)
    where = engine.url.render_as_string(hide_password=True)
    if before == head:
        click.echo(f"{where}: already at {head}")
    else:
        click.echo(f"{where}: {before or 'unversioned'} -> at {head}")


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, help="Config file.")
@click.option("--until-idle", is_flag=True, help="Exit once no issue is due or in flight (batch jobs, tests).")
def worker(config_path: str | None, until_idle: bool) -> None:
    """Drain the delivery ledger; run any number of these against one PostgreSQL store."""
    from ..delivery.worker import Worker

    cfg = _load(config_path)
    engine = _require_schema(cfg)
    w = Worker(cfg, engine, echo=lambda line: click.echo(line, err=True))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: w.stop.set())
    click.echo(f"worker {w.id} started (lease {cfg.delivery.lease:g}s)", err=True)
    try:
        report = w.run(until_idle=until_idle)
    except PublisherError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(report.line(), err=True)
    sys.exit(1 if report.failed else 0)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class Age(click.ParamType[dt.timedelta]):
    """``30d``, ``12h``, ``2w``, ``90m``, ``45s``: a duration."""

    name = "age"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dt.timedelta:
        if isinstance(value, dt.timedelta):
            return value
        match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", str(value))
        if match is None:
            self.fail(f"{value!r} is not an age like 30d, 12h, 2w, 90m or 45s", param, ctx)
        return dt.timedelta(seconds=int(match[1]) * _UNITS[match[2]])


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, help="Config file.")
@click.option("--older-than", "older_than", type=Age(), required=True,
              help="Prune issues sent longer ago than this (30d, 12h, 2w…).")
@click.option("--batch", type=click.IntRange(1), default=5000, show_default=True,
              help="Rows deleted per transaction (each a short lock).")
def prune(config_path: str | None, older_than: dt.timedelta, batch: int) -> None:
    """Delete the delivery rows of issues sent longer ago than --older-than; their totals stay on the issue."""
    from ..core.clock import system_clock
    from ..store import prune as ledger_prune

    cfg = _load(config_path)
    engine = _require_schema(cfg)

    def show(p: ledger_prune.Pruned) -> None:
        t = p.totals
        click.echo(f"{p.label}: {p.deleted} delivery rows deleted (kept: {t.recipients} recipients, "
                   f"{t.sent} sent, {t.failed} failed, {t.skipped} skipped)")

    done = ledger_prune.prune(engine, older_than=older_than, now=system_clock(), batch=batch, on_issue=show)
    click.echo(f"pruned {len(done)} issue(s), {sum(p.deleted for p in done)} delivery rows")


def _load(config_path: str | None) -> Config:
    from .base import _load_config

    path = config_path or click.get_current_context().find_root().params.get("config_path")
    # writes=True: like every command that changes the state, refuse built-in defaults in a folder without config.toml.
    return _load_config(path, writes=True)


def register(main: click.Group) -> None:
    main.add_command(migrate)
    main.add_command(worker)
    main.add_command(prune)
    _guard(main.commands["run"], _run_guard)
    _guard(main.commands["serve"], _schema_only)
