"""The ``publisher`` command: thin click wrappers, one library call each.

Exit codes: 0 success, 1 the work found problems (bad briefs, failed
sends), 2 usage or configuration errors.
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

from .core import config as config_mod
from .core.config import Config
from .core.errors import ConfigError, PublisherError
from .core.states import CADENCES, SUBSCRIBER_STATUSES, Cadence, IssueState, SENDABLE_STATES

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
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _paths_arg(paths: tuple[str, ...]) -> list[Path]:
    return [Path(p) for p in paths]


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@with_read_config
def parse(file: str, cfg: Config) -> None:
    """Print one parsed brief as JSON."""
    import json

    from .briefs import load_brief
    from .briefs.serialize import brief_to_dict

    brief = load_brief(file, base_url=cfg.site.base_url)
    click.echo(json.dumps(brief_to_dict(brief), ensure_ascii=False, indent=2))


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@with_read_config
def check(paths: tuple[str, ...], cfg: Config) -> None:
    """Lint briefs like a compiler: file:line: error|warning: message."""
    from .briefs.lint import check_paths

    report = check_paths(_paths_arg(paths), base_url=cfg.site.base_url)
    for finding in report.findings:
        click.echo(str(finding))
    click.echo(
        f"{report.files} file(s): {report.errors} error(s), {report.warnings} warning(s)",
        err=True,
    )
    sys.exit(1 if report.errors else 0)


# ---------------------------------------------------------------- subscribers and delivery


def _store(cfg: Config) -> Any:
    from .store.engine import connect

    return connect(cfg.store_url)


@main.group("subscribers")
def subscribers_group() -> None:
    """Manage subscribers: add, remove, list, import, export."""


@subscribers_group.command("add")
@click.argument("email")
@click.option("--cadence", type=click.Choice(CADENCES), default=Cadence.INSTANT.value, show_default=True)
@click.option("--double-opt-in", is_flag=True, help="Store as pending and send a confirmation email.")
@with_config
def subscribers_add(email: str, cadence: str, double_opt_in: bool, cfg: Config) -> None:
    """Add one subscriber (active at once unless --double-opt-in)."""
    from .core.addresses import normalize_email
    from .core.clock import system_clock
    from .delivery.subscriptions import subscribe
    from .store import subscribers as subscribers_store

    engine = _store(cfg)
    if double_opt_in:
        subscribe(cfg, engine, email, cadence)
        click.echo(f"confirmation sent to {normalize_email(email)}")
        return
    sub, created = subscribers_store.add_subscriber(engine, email, cadence, status="active", now=system_clock())
    click.echo(f"{'added' if created else 'exists'}: {sub.email} ({sub.status}, {sub.cadence})")


@subscribers_group.command("remove")
@click.argument("email")
@click.option("--forget", is_flag=True, help="Erase the row and its delivery history instead of marking it unsubscribed.")
@with_config
def subscribers_remove(email: str, forget: bool, cfg: Config) -> None:
    """Unsubscribe an address (or erase it with --forget)."""
    from .core.clock import system_clock
    from .store import subscribers as subscribers_store

    sub = subscribers_store.remove_subscriber(_store(cfg), email, forget=forget, now=system_clock())
    click.echo(f"{'erased' if forget else 'unsubscribed'}: {sub.email}")


@subscribers_group.command("list")
@click.option("--status", type=click.Choice(SUBSCRIBER_STATUSES))
@click.option("--cadence", type=click.Choice(CADENCES))
@with_config
def subscribers_list(status: str | None, cadence: str | None, cfg: Config) -> None:
    """One subscriber per line: email, status, cadence, since."""
    from .store import subscribers as subscribers_store

    engine = _store(cfg)
    n = 0
    for s in subscribers_store.list_subscribers(engine, status=status, cadence=cadence):
        click.echo(f"{s.email}\t{s.status}\t{s.cadence}\t{s.created_at.date().isoformat()}")
        n += 1
    counts = subscribers_store.count_subscribers(engine)
    click.echo(f"{n} listed; " + ", ".join(f"{k} {v}" for k, v in counts.items()), err=True)


@subscribers_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--cadence", type=click.Choice(CADENCES), default=Cadence.INSTANT.value, show_default=True,
              help="Cadence for rows without one.")
@with_config
def subscribers_import(file: str, cadence: str, cfg: Config) -> None:
    """Import a CSV (email[,cadence[,status]]); bad rows are reported by line, the rest imported."""
    from .core.clock import system_clock
    from .delivery.csv_io import import_csv

    with open(file, encoding="utf-8-sig", newline="") as fh:
        report = import_csv(_store(cfg), fh, source=file, now=system_clock(), default_cadence=cadence)
    for line in report.lines():
        click.echo(line, err=True)
    click.echo(f"{report.added} added, {report.existing} already present, {len(report.problems)} bad row(s)")
    sys.exit(1 if report.problems else 0)


@subscribers_group.command("export")
@click.option("--status", type=click.Choice(SUBSCRIBER_STATUSES))
@with_config
def subscribers_export(status: str | None, cfg: Config) -> None:
    """Write every subscriber as CSV to standard output."""
    from .delivery.csv_io import export_csv

    n = export_csv(_store(cfg), sys.stdout, status=status)
    click.echo(f"{n} subscriber(s) exported", err=True)


def _issue_for(engine: Any, target: str, states: tuple[str, ...], cadence: str | None = None) -> Any:
    from .publish.issues import parse_target
    from .store import issues

    if target == "digest":
        return issues.latest_digest(engine, states, cadence=cadence)
    return issues.find_issue(engine, *parse_target(target))


@main.command("send")
@click.argument("target", metavar="SLUG|digest|digest:PERIOD")
@click.option("--test", "test_address", metavar="ADDRESS", help="Send one copy to ADDRESS, subject marked [TEST]; no ledger rows.")
@click.option("--cadence", type=click.Choice(["daily", "weekly"]), default=None, help="With 'digest': the latest of this cadence.")
@with_config
def send(target: str, test_address: str | None, cadence: str | None, cfg: Config) -> None:
    """Send an approved issue (a story, or the latest approved digest); resumes an interrupted send."""
    from .delivery import send as delivery
    from .delivery.sender import SendAborted

    engine = _store(cfg)
    if test_address:
        issue = _issue_for(engine, target, tuple(s for s in IssueState if s is not IssueState.ERROR), cadence)
        delivery.send_test(cfg, engine, delivery.rendered_from_row(issue), test_address)
        click.echo(f"test of {issue.kind} {issue.key} sent to {test_address}")
        return
    issue = _issue_for(engine, target, (*SENDABLE_STATES, IssueState.SENT), cadence)
    if issue.state is IssueState.SENT:
        # The service's drain got there first: the work is done.
        click.echo(f"{issue.label} was sent already")
        return
    bar: Any = None
    progress: Callable[[Any], None] | None = None
    if sys.stdout.isatty():
        bar = click.progressbar(length=1, label=f"{issue.kind} {issue.key}")

        def _progress(p: Any) -> None:
            bar.length = max(p.total, 1)
            bar.update(p.done - bar.pos)

        progress = _progress
    try:
        report = delivery.send_issue(cfg, engine, issue.id, progress=progress, actor=actor())
    except SendAborted as exc:
        report = exc.report
        click.echo(f"error: {exc}", err=True)
    finally:
        if bar is not None:
            bar.render_finish()
    click.echo(
        f"{issue.kind} {issue.key}: {report.sent} sent, {report.failed} failed, {report.retrying} retried, "
        f"{report.skipped} skipped, {report.queued} still queued, {report.recovered} recovered from a dead sender "
        f"({report.elapsed:.1f}s)"
    )
    sys.exit(1 if report.failed or report.queued else 0)


@main.command("deliveries")
@click.argument("target", metavar="SLUG|digest")
@with_config
def deliveries_cmd(target: str, cfg: Config) -> None:
    """Delivery progress of an issue: queued / sending / sent / failed, and the failures."""
    from .store import deliveries as ledger

    engine = _store(cfg)
    issue = _issue_for(engine, target, (IssueState.APPROVED, IssueState.SENDING, IssueState.SENT, IssueState.HELD, IssueState.ERROR))
    p = ledger.progress(engine, issue.id)
    click.echo(
        f"{issue.kind} {issue.key} ({issue.state}): {p.total} recipients: {p.queued} queued, "
        f"{p.sending} sending, {p.sent} sent, {p.failed} failed, {p.skipped} skipped"
    )
    for row in ledger.failures(engine, issue.id):
        click.echo(f"  failed {row.email} after {row.attempts} attempt(s): {row.last_error}")


@main.command()
@click.option("--host", default=None, help="Bind address (default: desk.host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: desk.port, 8000).")
@with_config
def serve(host: str | None, port: int | None, cfg: Config) -> None:
    """Serve the editors' desk (/desk) and public/ (feeds, issues, subscribe) without the scheduler."""
    from .web.server import serve as serve_web

    serve_web(cfg, host=host, port=port)


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
    from .briefs import load_brief
    from .mail.message import example_message
    from .render.email import render_story, web_version

    brief = load_brief(file, base_url=cfg.site.base_url)
    issue = render_story(brief, cfg)
    if fmt == "eml":
        # The brief's own publication time keeps the example reproducible.
        sys.stdout.buffer.write(example_message(issue, cfg, sent_at=brief.published_at(cfg.site.tz)))
        return
    html, text = web_version(issue, cfg)
    click.echo({"html": html, "text": text, "mjml": issue.mjml}[fmt], nl=False)


def _pipeline(cfg: Config) -> Any:
    from .publish.pipeline import Pipeline

    return Pipeline(cfg, _store(cfg))


@main.command()
@click.option("--briefs", "briefs_dir", type=click.Path(file_okay=False), default=None, help="Briefs folder (overrides config).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, help="Output folder (overrides config).")
@with_config
def build(briefs_dir: str | None, out_dir: str | None, cfg: Config) -> None:
    """Render every brief once into public/: feeds, tag feeds, web issues."""
    overrides = {}
    if briefs_dir:
        if not Path(briefs_dir).is_dir():
            click.echo(f"error: --briefs {briefs_dir}: no such folder", err=True)
            sys.exit(2)
        overrides["briefs"] = Path(briefs_dir).resolve()
    if out_dir:
        overrides["public"] = Path(out_dir).resolve()
    if overrides:
        cfg = cfg.with_paths(**overrides)
    result = _pipeline(cfg).build_all()
    for error in result.errors:
        click.echo(error, err=True)
    click.echo(
        f"{len(result.published)} published, {len(result.errors)} rejected, {len(result.removed)} removed, "
        f"{len(result.written)} file(s) written to {cfg.paths.public}",
        err=True,
    )
    sys.exit(1 if result.errors else 0)


@main.command()
@click.option("--once", is_flag=True, help="Scan and publish once, then exit.")
@click.option("--no-web", is_flag=True, help="Run the scheduler without the web app.")
@click.option("--no-send", is_flag=True, help="Do not drain the delivery queue.")
@with_config
def run(once: bool, no_web: bool, no_send: bool, cfg: Config) -> None:
    """The service: watch briefs/, publish, queue issues, make digests, serve the desk."""
    import signal
    import threading

    from .service import Service

    pub = _pipeline(cfg)
    if not pub.load_index():
        # First start on this store: publish the folder in one parallel build.
        # Existing briefs go to the feeds; email issues are made for briefs
        # that arrive from now on (or when an editor approves one).
        pub.build_all()
    result = pub.sync()
    if once:
        for error in result.errors:
            click.echo(error, err=True)
        return
    pub.catch_up_digest()
    service = Service(cfg, pub.engine, pub, deliver=not no_send)
    service.start()
    try:
        if no_web:
            stop = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            stop.wait()
        else:
            from .web.server import make_server

            server = make_server(cfg, pub.engine, pub)
            click.echo(f"desk and feeds at http://{cfg.desk.host}:{cfg.desk.port}/", err=True)
            # uvicorn re-raises the signal it caught once it has stopped; with the
            # default SIGTERM action that would kill us before the scheduler's
            # jobs finish, so the re-raised signal lands on a no-op instead.
            signal.signal(signal.SIGTERM, lambda *_: None)
            server.run()  # returns on SIGINT/SIGTERM
    finally:
        service.stop()


@main.command()
@click.argument("target", metavar="SLUG|digest:PERIOD")
@click.option("--at", "send_at", type=click.DateTime(["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"]), default=None,
              help="Send at this time (site time zone) instead of the next send.")
@with_config
def approve(target: str, send_at: Any, cfg: Config) -> None:
    """Release an issue for sending (a story's issue is made if it has none) and say whom it reaches."""
    when = send_at.replace(tzinfo=cfg.site.tz) if send_at is not None else None
    released = _pipeline(cfg).approve(target, actor=actor(), send_at=when)
    click.echo(released.describe())


@main.command()
@click.argument("target", metavar="SLUG|digest:PERIOD")
@with_config
def hold(target: str, cfg: Config) -> None:
    """Hold an issue back until it is approved again."""
    _pipeline(cfg).hold(target, actor=actor())
    click.echo(f"{target}: held")


@main.command()
@click.option("--cadence", type=click.Choice(["daily", "weekly"]), default="daily", show_default=True)
@with_config
def digest(cadence: str, cfg: Config) -> None:
    """Make the current period's digest now (idempotent) and print it."""
    from .store import issues

    pipeline = _pipeline(cfg)
    issue_id = pipeline.make_digest_now(cadence, actor=actor())
    if issue_id is None:
        click.echo(f"no new stories for the {cadence} digest", err=True)
        return
    issue = issues.get_issue(pipeline.engine, issue_id)
    click.echo(f"{issue.label} ({issue.state.label})\nSubject: {issue.subject}\n")
    click.echo(issue.text, nl=False)


@main.command()
@with_config
def status(cfg: Config) -> None:
    """Stories by state, pending approvals, recent errors, next digest."""
    st = _pipeline(cfg).status()
    click.echo(f"{st.stories} stories: " + ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in sorted(st.states.items())))
    if st.awaiting:
        click.echo("awaiting approval:")
        for slug, title in st.awaiting:
            click.echo(f"  {slug}  {title}")
    if st.errors:
        click.echo("errors:")
        for _path, error in st.errors:
            click.echo(f"  {error}")
    click.echo(f"next digest: {st.next_digest.isoformat() if st.next_digest else 'none scheduled'}")


from .cli_scale import register  # noqa: E402  (migrate, worker; the schema check and the leader lock)
register(main)
