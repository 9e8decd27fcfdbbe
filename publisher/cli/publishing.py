"""Commands over the pipeline and the service: build, run, serve, status, approve, hold, digest."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..core.config import Config
from .base import actor, main, pipeline_for, with_config
from .delivery import delivery_warnings


@main.command()
@click.option("--host", default=None, help="Bind address (default: desk.host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: desk.port, 8000).")
@click.option("--no-auth", is_flag=True, help="Tests only: an open loopback desk without the sign-in link.")
@with_config
def serve(host: str | None, port: int | None, no_auth: bool, cfg: Config) -> None:
    """Serve the editors' desk (/desk) and public/ (feeds, issues, subscribe) without the scheduler."""
    from ..web.server import serve as serve_web

    server = serve_web(cfg, host=host, port=port, no_auth=no_auth)
    _announce_desk(server, no_auth)
    server.run()


def _announce_desk(server: Any, no_auth: bool) -> None:
    from ..web.server import sign_in_url

    url = sign_in_url(server)
    if url:
        click.echo(f"desk sign-in link (no password set; valid until this process stops):\n    {url}", err=True)
    if no_auth:
        click.echo("WARNING: --no-auth: the desk is open to every local process and web page", err=True)


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
    # A running service publishes the folder itself: building beside it would race it.
    lock = _state_lock(cfg, "build", "; the running service publishes the folder itself (stop it to build)")
    import signal

    from ..publish.heads import FirstPass
    from ..publish.workers import count

    before = _stop_on_sigterm()
    try:
        # Its workers read the briefs' heads while this process imports the pipeline's modules.
        first = FirstPass(cfg, count(None))
        try:
            result = pipeline_for(cfg).build_all(first=first)
        finally:
            first.close()
    finally:
        signal.signal(signal.SIGTERM, before)
        lock.release()
    for error in result.errors:
        click.echo(error, err=True)
    click.echo(
        f"{len(result.published)} published, {len(result.errors)} rejected, {len(result.removed)} removed, "
        f"{len(result.written)} file(s) written to {cfg.paths.public}",
        err=True,
    )
    # The process ends here: frozen, the build's objects are left out of the
    # interpreter's last collections, which walked them all (0.25 s at 10k briefs).
    import gc

    gc.freeze()
    sys.exit(1 if result.errors else 0)


@main.command()
@click.option("--once", is_flag=True, help="Scan and publish once, then exit.")
@click.option("--no-web", is_flag=True, help="Run the scheduler without the web app.")
@click.option("--no-send", is_flag=True, help="Do not drain the delivery queue.")
@click.option("--no-auth", is_flag=True, help="Tests only: an open loopback desk without the sign-in link.")
@with_config
def run(once: bool, no_web: bool, no_send: bool, no_auth: bool, cfg: Config) -> None:
    """The service: watch briefs/, publish, queue issues, make digests, serve the desk."""
    # One service per state folder; the kernel drops the lock however the process ends.
    import signal

    lock = _state_lock(cfg, "run", "")
    before = signal.getsignal(signal.SIGTERM)
    try:
        _run(once, no_web, no_send, no_auth, cfg)
    finally:
        signal.signal(signal.SIGTERM, before)
        lock.release()


def _state_lock(cfg: Config, command: str, hint: str) -> Any:
    """The state folder's lock for this process, or exit 2 naming its holder (one service per state)."""
    from ..core.statelock import StateLock, StateLocked

    try:
        return StateLock(cfg.paths.state, command).acquire()
    except StateLocked as exc:
        click.echo(f"error: {exc}{hint}", err=True)
        sys.exit(2)


def _stop_on_sigterm() -> Any:
    """SIGTERM unwinds like Ctrl-C, so a build's pool is torn down instead of being left to finish; the old handler."""
    import signal

    return signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


def _run(once: bool, no_web: bool, no_send: bool, no_auth: bool, cfg: Config) -> None:
    import signal
    import threading

    from ..service import Service

    _stop_on_sigterm()
    if not no_send:
        delivery_warnings(cfg)
    pub = pipeline_for(cfg)
    if not pub.has_published():
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
            from ..web.server import make_server

            server = make_server(cfg, pub.engine, pub, no_auth=no_auth)
            click.echo(f"desk and feeds at http://{cfg.desk.host}:{cfg.desk.port}/", err=True)
            _announce_desk(server, no_auth)
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
    released = pipeline_for(cfg).approve(target, actor=actor(), send_at=when)
    click.echo(released.describe())


@main.command()
@click.argument("target", metavar="SLUG|digest:PERIOD")
@with_config
def hold(target: str, cfg: Config) -> None:
    """Hold an issue back until it is approved again."""
    pipeline_for(cfg).hold(target, actor=actor())
    click.echo(f"{target}: held")


@main.command()
@click.option("--cadence", type=click.Choice(["daily", "weekly"]), default="daily", show_default=True)
@with_config
def digest(cadence: str, cfg: Config) -> None:
    """Make the current period's digest now (idempotent) and print it."""
    from ..store import issues

    pipeline = pipeline_for(cfg)
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
    st = pipeline_for(cfg).status()
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

