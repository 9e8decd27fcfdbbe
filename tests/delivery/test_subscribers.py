"""Subscriber CSV import/export and the subscribers/send/deliveries commands."""

from __future__ import annotations

import csv
import email
import email.policy
import io
import mailbox
from pathlib import Path

import pytest
from click.testing import CliRunner

from publisher.cli import main
from publisher.delivery.csv_io import export_csv, import_text
from publisher.store import deliveries as ledger
from publisher.store import issues as issues_store
from publisher.store import subscribers as subscribers_store

from publisher.store import connect
from tests.support.smtp import T0, add_issue, make_cfg, make_store

CSV = """email,cadence,status
good@example.org,daily,
not-an-address,instant,
Second@Example.org,,
dup@example.org,weekly,active
third@example.org,hourly,
dup@example.org,weekly,active
gone@example.org,instant,unsubscribed
fourth@example.org,instant,banned

# a comment line
fifth@example.org
"""


def test_import_reports_bad_rows_by_line_and_imports_the_rest(tmp_path: Path) -> None:
    engine = make_store(make_cfg(tmp_path))
    report = import_text(engine, CSV, source="list.csv", now=T0)
    assert list(report.lines()) == [
        "list.csv:3: invalid address: 'not-an-address': An email address must have an @-sign.",
        "list.csv:6: cadence 'hourly': expected instant/daily/weekly",
        "list.csv:9: status 'banned': expected active/pending/unsubscribed/bounced",
    ]
    assert (report.added, report.existing) == (5, 1)
    subs = {s.email: s for s in subscribers_store.list_subscribers(engine)}
    assert set(subs) == {"good@example.org", "second@example.org", "dup@example.org", "gone@example.org", "fifth@example.org"}
    assert subs["good@example.org"].cadence == "daily" and subs["good@example.org"].status == "active"
    assert subs["gone@example.org"].status == "unsubscribed"


def test_reimport_never_resubscribes_someone_who_left(tmp_path: Path) -> None:
    engine = make_store(make_cfg(tmp_path))
    subscribers_store.add_subscriber(engine, "left@example.org", "instant", status="unsubscribed", now=T0)
    report = import_text(engine, "left@example.org\nnew@example.org\n", source="x.csv", now=T0)
    assert (report.added, report.existing, report.problems) == (1, 1, [])
    assert subscribers_store.find_subscriber(engine, "left@example.org").status == "unsubscribed"  # type: ignore[union-attr]


def test_export_round_trips(tmp_path: Path, second_store_url: str) -> None:
    engine = make_store(make_cfg(tmp_path))
    import_text(engine, CSV, source="list.csv", now=T0)
    out = io.StringIO()
    assert export_csv(engine, out) == 5
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert rows[0]["email"] == "good@example.org" and rows[0]["created_at"] == "2026-11-28T12:00:00+00:00"
    other = connect(second_store_url)
    again = import_text(other, out.getvalue(), source="export.csv", now=T0)
    assert again.problems == [] and again.added == 5
    assert [(s.email, s.status, s.cadence) for s in subscribers_store.list_subscribers(other)] == [
        (s.email, s.status, s.cadence) for s in subscribers_store.list_subscribers(engine)
    ]


def _config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text('[site]\nbase_url = "https://news.example.org/"\n', encoding="utf-8")
    return path


def test_cli_subscribers_send_and_deliveries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUBLISHER_SIGNING_KEY", "s" * 40)
    cfg_path = _config_file(tmp_path)
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(main, [*args, "--config", str(cfg_path)])
        return result.exit_code, result.output

    code, out = run("subscribers", "add", "One@Example.org")
    assert code == 0 and "added: one@example.org (active, instant)" in out
    assert run("subscribers", "add", "not an address")[0] == 1
    (tmp_path / "list.csv").write_text("email\ntwo@example.org\nbroken\nthree@example.org\n", encoding="utf-8")
    code, out = run("subscribers", "import", str(tmp_path / "list.csv"))
    assert code == 1  # bad rows make the exit status say so
    assert f"{tmp_path / 'list.csv'}:3: invalid address" in out and "2 added" in out
    code, out = run("subscribers", "remove", "three@example.org")
    assert code == 0 and "unsubscribed: three@example.org" in out
    code, out = run("subscribers", "list", "--status", "active")
    lines = out.splitlines()
    assert lines[0].startswith("one@example.org\tactive\tinstant\t")
    assert lines[1].startswith("two@example.org\tactive\tinstant\t")
    assert "three@example.org" not in out
    result = runner.invoke(main, ["subscribers", "export", "--config", str(cfg_path)])
    assert result.exit_code == 0 and result.stdout.startswith("email,status,cadence")
    assert len(result.stdout.splitlines()) == 4

    # an approved issue, sent to the Maildir outbox (no smtp.host configured)
    from publisher.core import config as config_mod

    cfg = config_mod.load(str(cfg_path))
    engine = make_store(cfg)
    issue_id = add_issue(engine)
    slug = issues_store.get_issue(engine, issue_id).key
    code, out = run("send", slug, "--test", "editor@example.org")
    assert code == 0 and ledger.progress(engine, issue_id).total == 0
    code, out = run("send", slug)
    assert code == 0, out
    assert "2 sent, 0 failed" in out
    code, out = run("deliveries", slug)
    assert code == 0 and "2 recipients: 0 queued, 0 sending, 2 sent, 0 failed" in out and "(sent)" in out
    box = mailbox.Maildir(str(cfg.paths.state / "outbox"), create=False)
    parsed = [email.message_from_bytes(box.get_bytes(k), policy=email.policy.default) for k in box.keys()]
    tests = [m for m in parsed if str(m["Subject"]).startswith("[TEST] ")]
    assert len(parsed) == 3 and len(tests) == 1 and tests[0]["To"] == "editor@example.org"
    code, out = run("send", slug)
    # Sent already (by this command or the service's drain): said, and not an error.
    assert code == 0 and f"story {slug} was sent already" in out
