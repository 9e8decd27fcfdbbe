"""The ``publisher`` command's frame: the group, where the config comes from, exit codes.

Exit codes: 0 success, 1 the work found problems (bad briefs, failed
sends, a refused state change), 2 usage or configuration errors, 130
interrupted. The commands live beside this module, one file per room they
drive; each is a thin click wrapper around one library call.
"""

from __future__ import annotations

import functools
import getpass
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..core import config as config_mod
from ..core.config import Config
from ..core.errors import ConfigError, PublisherError

F = TypeVar("F", bound=Callable[..., Any])


CONFIG_HELP = "Config file (default: $PUBLISHER_CONFIG, else ./config.toml)."


def _load_config(path: str | None, *, writes: bool) -> Config:
    path = path or os.environ.get("PUBLISHER_CONFIG") or None
    if path is None and writes and not Path("config.toml").exists():
        # Defaults would put a fresh, empty store in whatever folder this is.
        click.echo(
            f"error: no config.toml in {Path.cwd()}: run this from the project folder, or pass --config PATH "
            "(or set PUBLISHER_CONFIG)",
            err=True,
        )
        sys.exit(2)
    try:
        cfg = config_mod.load(path)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    for warning in cfg.warnings:
        click.echo(f"warning: {warning}", err=True)
    return cfg


def _with_config(func: F, *, writes: bool) -> F:
    @click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, help=CONFIG_HELP)
    @functools.wraps(func)
    def wrapper(*args: Any, config_path: str | None, **kwargs: Any) -> Any:
        outer = click.get_current_context().find_root().params.get("config_path")
        cfg = _load_config(config_path or outer, writes=writes)
        try:
            return func(*args, cfg=cfg, **kwargs)
        except PublisherError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def with_config(func: F) -> F:
    """Adds ``--config PATH`` (also accepted before the command) and passes the loaded Config as ``cfg``.

    These commands change the state folder, so they refuse to run on built-in
    defaults in a folder without a config.toml.
    """
    return _with_config(func, writes=True)


def with_read_config(func: F) -> F:
    """Like :func:`with_config`, for commands that only read briefs (defaults are fine anywhere)."""
    return _with_config(func, writes=False)


def actor() -> str:
    """Who made a change from the command line, for an issue's history."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "?"
    return f"cli ({user})"


class PublisherGroup(click.Group):
    """Ctrl-C ends any command quietly with 130 (the shell's convention), not "Aborted!" and 1."""

    def main(
        self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
        standalone_mode: bool = True, **extra: Any,
    ) -> Any:
        standalone = standalone_mode
        try:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.Abort:
            if not standalone:
                raise
            sys.exit(130)
        except click.ClickException as exc:
            if not standalone:
                raise
            exc.show()
            sys.exit(exc.exit_code)
        except click.exceptions.Exit as exc:
            if not standalone:
                raise
            sys.exit(exc.exit_code)


@click.group(cls=PublisherGroup)
@click.version_option(package_name="publisher")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, help=CONFIG_HELP)
def main(verbose: bool, config_path: str | None) -> None:
    """Publish news briefs as feeds and newsletters."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Alembic narrates every schema check at INFO (its plugins, its DDL mode): noise in each
    # command's log; `publisher migrate` says itself what it changed. -v shows it all.
    logging.getLogger("alembic").setLevel(logging.DEBUG if verbose else logging.WARNING)




def store_for(cfg: Config) -> Any:
    from ..store.engine import connect

    return connect(cfg.store_url)


def pipeline_for(cfg: Config) -> Any:
    from ..publish.pipeline import Pipeline

    return Pipeline(cfg, store_for(cfg))
