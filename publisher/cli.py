"""The ``publisher`` command: thin click wrappers, one library call each.

Exit codes: 0 success, 1 the work found problems (bad briefs, failed
sends), 2 usage or configuration errors.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from . import config as config_mod
from .config import Config
from .errors import ConfigError, PublisherError

F = TypeVar("F", bound=Callable[..., Any])


def _load_config(path: str | None) -> Config:
    try:
        cfg = config_mod.load(path)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    for warning in cfg.warnings:
        click.echo(f"warning: {warning}", err=True)
    return cfg


def with_config(func: F) -> F:
    """Adds ``--config PATH`` and passes the loaded Config as ``cfg``."""

    @click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="Config file (default: ./config.toml).",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, config_path: str | None, **kwargs: Any) -> Any:
        cfg = _load_config(config_path)
        try:
            return func(*args, cfg=cfg, **kwargs)
        except PublisherError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


@click.group()
@click.version_option(package_name="publisher")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """Publish news briefs as feeds and newsletters."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _paths_arg(paths: tuple[str, ...]) -> list[Path]:
    return [Path(p) for p in paths]


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@with_config
def parse(file: str, cfg: Config) -> None:
    """Print one parsed brief as JSON."""
    import json

    from .briefs import load_brief
    from .serialize import brief_to_dict

    brief = load_brief(file, base_url=cfg.site.base_url)
    click.echo(json.dumps(brief_to_dict(brief), ensure_ascii=False, indent=2))


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@with_config
def check(paths: tuple[str, ...], cfg: Config) -> None:
    """Lint briefs like a compiler: file:line: error|warning: message."""
    from .lint import check_paths

    report = check_paths(_paths_arg(paths), base_url=cfg.site.base_url)
    for finding in report.findings:
        click.echo(str(finding))
    click.echo(
        f"{report.files} file(s): {report.errors} error(s), {report.warnings} warning(s)",
        err=True,
    )
    sys.exit(1 if report.errors else 0)
