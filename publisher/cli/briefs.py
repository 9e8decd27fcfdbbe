"""Commands over brief files: parse, check, render (they read briefs, never the state)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..core.config import Config
from .base import main, with_read_config


def _paths_arg(paths: tuple[str, ...]) -> list[Path]:
    return [Path(p) for p in paths]


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@with_read_config
def parse(file: str, cfg: Config) -> None:
    """Print one parsed brief as JSON."""
    import json

    from ..briefs import load_brief
    from ..briefs.serialize import brief_to_dict

    brief = load_brief(file, base_url=cfg.site.base_url, max_bytes=cfg.briefs.max_bytes)
    click.echo(json.dumps(brief_to_dict(brief), ensure_ascii=False, indent=2))


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@with_read_config
def check(paths: tuple[str, ...], cfg: Config) -> None:
    """Lint briefs like a compiler: file:line: error|warning: message."""
    from ..briefs.lint import check_paths
    from ..render.email import budget_problem

    report = check_paths(_paths_arg(paths), base_url=cfg.site.base_url, max_bytes=cfg.briefs.max_bytes,
                         follow_symlinks=cfg.briefs.follow_symlinks, extra=lambda brief: budget_problem(brief, cfg))
    for finding in report.findings:
        click.echo(str(finding))
    click.echo(
        f"{report.files} file(s): {report.errors} error(s), {report.warnings} warning(s)",
        err=True,
    )
    sys.exit(1 if report.errors else 0)



@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--as",
    "fmt",
    type=click.Choice(["html", "text", "mjml", "eml"]),
    default="html",
    show_default=True,
    help="html/text: the public web version; mjml: the compiled template; eml: the full message for an example reader.",
)
@with_read_config
def render(file: str, fmt: str, cfg: Config) -> None:
    """Print the story issue one brief would make."""
    from ..briefs import load_brief
    from ..mail.message import example_message
    from ..render.email import render_story, web_version

    brief = load_brief(file, base_url=cfg.site.base_url, max_bytes=cfg.briefs.max_bytes)
    issue = render_story(brief, cfg)
    if fmt == "eml":
        # The brief's own publication time keeps the example reproducible.
        sys.stdout.buffer.write(example_message(issue, cfg, sent_at=brief.published_at(cfg.site.tz)))
        return
    html, text = web_version(issue, cfg)
    click.echo({"html": html, "text": text, "mjml": issue.mjml}[fmt], nl=False)

