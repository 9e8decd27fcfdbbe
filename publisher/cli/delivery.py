"""Commands over readers and sending: subscribers, bounces, send, deliveries, doctor."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..core.config import Config
from ..core.states import CADENCES, SENDABLE_STATES, SUBSCRIBER_STATUSES, Cadence, IssueState
from .base import actor, main, store_for, with_config


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
    from ..core.addresses import normalize_email
    from ..core.clock import system_clock
    from ..delivery.subscriptions import subscribe
    from ..store import subscribers as subscribers_store

    engine = store_for(cfg)
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
    from ..core.clock import system_clock
    from ..store import subscribers as subscribers_store

    sub = subscribers_store.remove_subscriber(store_for(cfg), email, forget=forget, now=system_clock())
    click.echo(f"{'erased' if forget else 'unsubscribed'}: {sub.email}")


@subscribers_group.command("list")
@click.option("--status", type=click.Choice(SUBSCRIBER_STATUSES))
@click.option("--cadence", type=click.Choice(CADENCES))
@with_config
def subscribers_list(status: str | None, cadence: str | None, cfg: Config) -> None:
    """One subscriber per line: email, status, cadence, since."""
    from ..store import subscribers as subscribers_store

    engine = store_for(cfg)
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
    from ..core.clock import system_clock
    from ..delivery.csv_io import import_csv

    with open(file, encoding="utf-8-sig", newline="") as fh:
        report = import_csv(store_for(cfg), fh, source=file, now=system_clock(), default_cadence=cadence)
    for line in report.lines():
        click.echo(line, err=True)
    click.echo(f"{report.added} added, {report.existing} already present, {len(report.problems)} bad row(s)")
    sys.exit(1 if report.problems else 0)


@subscribers_group.command("export")
@click.option("--status", type=click.Choice(SUBSCRIBER_STATUSES))
@with_config
def subscribers_export(status: str | None, cfg: Config) -> None:
    """Write every subscriber as CSV to standard output."""
    from ..delivery.csv_io import export_csv

    n = export_csv(store_for(cfg), sys.stdout, status=status)
    click.echo(f"{n} subscriber(s) exported", err=True)


@subscribers_group.command("reactivate")
@click.argument("email", required=False)
@click.option("--bounced-since", metavar="DATE", help="Every subscriber hard-bounced on or after DATE (YYYY-MM-DD, UTC).")
@click.option("--by", default=None, help="Who is doing it, for the record (default: the login name).")
@with_config
def subscribers_reactivate(email: str | None, bounced_since: str | None, by: str | None, cfg: Config) -> None:
    """Undo bounces: ADDRESS, or everyone bounced since DATE (a relay's bad day); each undo is recorded."""
    import datetime as dt
    import getpass

    from ..core.clock import system_clock
    from ..store import bounces

    if (email is None) == (bounced_since is None):
        click.echo("error: give an ADDRESS or --bounced-since DATE", err=True)
        sys.exit(2)
    try:
        since = dt.datetime.fromisoformat(bounced_since).replace(tzinfo=dt.timezone.utc) if bounced_since else None
    except ValueError:
        click.echo(f"error: --bounced-since {bounced_since!r}: not a date (YYYY-MM-DD)", err=True)
        sys.exit(2)
    done = bounces.reactivate(store_for(cfg), email=email, bounced_since=since, by=by or getpass.getuser(), now=system_clock())
    for address in done:
        click.echo(f"reactivated: {address}")
    click.echo(f"{len(done)} subscriber(s) reactivated", err=True)
    sys.exit(0 if done or since is not None else 1)


@main.group("bounces")
def bounces_group() -> None:
    """Asynchronous bounces and complaints (DSNs in a Maildir or IMAP folder)."""


@bounces_group.command("scan")
@click.option("--maildir", type=click.Path(file_okay=False, exists=True), default=None, help="Maildir to read (default: bounces.maildir).")
@click.option("--imap", is_flag=True, help="Read the IMAP folder of [bounces] instead.")
@with_config
def bounces_scan(maildir: str | None, imap: bool, cfg: Config) -> None:
    """Read returned mail: hard bounces count toward bounce_after, soft ones toward soft_after, complaints unsubscribe."""
    from ..delivery.bounces import scan

    report = scan(cfg, store_for(cfg), maildir=Path(maildir) if maildir else None, imap=imap)
    for address in report.bounced:
        click.echo(f"bounced: {address}")
    for address in report.unsubscribed:
        click.echo(f"unsubscribed (complaint): {address}")
    click.echo(
        f"{report.messages} message(s): {report.events} new event(s), {report.repeated} seen before, "
        f"{report.ignored} not a bounce"
    )


def _issue_for(engine: Any, target: str, states: tuple[str, ...], cadence: str | None = None) -> Any:
    from ..publish.issues import parse_target
    from ..store import issues

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
    from ..delivery import send as delivery
    from ..delivery.sender import SendAborted

    engine = store_for(cfg)
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
    delivery_warnings(cfg)
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
        f"{report.skipped} skipped, {report.queued} still queued, {report.unknown} unknown (resent once), "
        f"{report.recovered} recovered from a dead sender "
        f"({report.elapsed:.1f}s)"
    )
    sys.exit(1 if report.failed or report.queued else 0)


@main.command("deliveries")
@click.argument("target", metavar="SLUG|digest")
@with_config
def deliveries_cmd(target: str, cfg: Config) -> None:
    """Delivery progress of an issue: queued / sending / sent / failed, bounces and complaints, the failures."""
    from ..store import bounces
    from ..store import deliveries as ledger
    from ..store import prune as ledger_prune

    engine = store_for(cfg)
    issue = _issue_for(engine, target, (IssueState.APPROVED, IssueState.SENDING, IssueState.SENT, IssueState.HELD, IssueState.ERROR))
    p = ledger.progress(engine, issue.id)
    click.echo(
        f"{issue.kind} {issue.key} ({issue.state}): {p.total} recipients: {p.queued} queued, "
        f"{p.sending} sending, {p.sent} sent, {p.failed} failed, {p.skipped} skipped"
    )
    counts = bounces.issue_counts(engine, [issue.id]).get(issue.id, bounces.IssueCounts())
    click.echo(f"  {counts.bounces} bounce(s), {counts.complaints} complaint(s), {counts.unknown} unknown outcome(s)")
    for row in ledger.failures(engine, issue.id):
        click.echo(f"  failed {row.email} after {row.attempts} attempt(s): {row.last_error}")
    if ledger_prune.issue_totals(engine, issue.id) is not None:
        click.echo("  (its delivery rows were pruned: the totals above were kept, the per-address rows are gone)")


def delivery_warnings(cfg: Config) -> None:
    from ..delivery.doctor import delivery_warnings

    for warning in delivery_warnings(cfg):
        click.echo(f"warning: {warning}", err=True)


@main.command()
@with_config
def doctor(cfg: Config) -> None:
    """Deliverability check: the DNS records to publish (DKIM, SPF, DMARC) and risky settings."""
    from ..delivery.doctor import report

    lines, ok = report(cfg)
    for line in lines:
        click.echo(line)
    sys.exit(0 if ok else 1)


