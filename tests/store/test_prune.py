"""Pruning the ledger: a finished issue's rows go in batches, its totals stay where the desk and the CLI read them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.command import upgrade as alembic_upgrade
from click.testing import CliRunner
from sqlalchemy.engine import Engine

from publisher.cli import main
from publisher.store import bounces, connect, migrate
from publisher.store import deliveries as ledger
from publisher.store import issues as issues_store
from publisher.store import prune as ledger_prune
from publisher.store.schema import deliveries, issues, subscribers
from tests.support.project import make_project
from tests.support.smtp import T0, add_issue, add_subscribers, make_cfg, make_store

DAY = dt.timedelta(days=1)


def _count(engine: Engine, issue_id: int) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).where(deliveries.c.issue_id == issue_id)).scalar_one())


def _sent_issue(engine: Engine, key: str, *, finished: dt.datetime) -> int:
    """An issue sent to the 7 readers: 5 sent, 1 failed (a hard bounce), 1 skipped (gone before its turn)."""
    issue_id = add_issue(engine, key=key)
    issues_store.start_issue(engine, issue_id, now=finished)
    with engine.begin() as conn:  # the last reader leaves mid-send
        last = conn.execute(sa.select(sa.func.max(subscribers.c.id))).scalar_one()
        conn.execute(subscribers.update().where(subscribers.c.id == last).values(status="unsubscribed"))
    claimed = ledger.claim(engine, issue_id, "test", 100, now=finished)
    assert len(claimed) == 6
    ledger.mark_sent(engine, [c.delivery_id for c in claimed[:5]], now=finished)
    bad = claimed[5]
    ledger.mark_failed(engine, [ledger.Failure(bad.delivery_id, bad.subscriber_id, "550 no such user", True, 0)],
                       now=finished, max_attempts=3, backoff=1, bounce_after=1)
    assert issues_store.finish_issue(engine, issue_id, now=finished)
    with engine.begin() as conn:
        conn.execute(subscribers.update().values(status="active"))
    return issue_id


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_store(make_cfg(tmp_path))
    add_subscribers(engine, 7)
    return engine


def test_prune_keeps_the_totals_and_deletes_only_old_finished_issues_in_batches(engine: Engine) -> None:
    old = _sent_issue(engine, "old-news", finished=T0 - 40 * DAY)
    recent = _sent_issue(engine, "recent-news", finished=T0 - 10 * DAY)
    sending = add_issue(engine, key="going-out")
    issues_store.start_issue(engine, sending, now=T0 - 50 * DAY)  # old, but not finished: never pruned
    before = issues_store.story_summaries(engine)["old-news"]
    assert (before.recipients, before.sent, before.failed) == (7, 5, 1)

    seen: list[ledger_prune.Pruned] = []
    done = ledger_prune.prune(engine, older_than=30 * DAY, now=T0, batch=2, on_issue=seen.append)
    assert [(p.issue_id, p.deleted) for p in done] == [(old, 7)] and seen == done
    assert done[0].totals == ledger_prune.Totals(recipients=7, sent=5, failed=1, skipped=1)
    assert (_count(engine, old), _count(engine, recent), _count(engine, sending)) == (0, 7, 7)

    # What the desk, the newsroom and `publisher deliveries` read still shows the counts.
    after = issues_store.story_summaries(engine)["old-news"]
    assert (after.recipients, after.sent, after.failed) == (7, 5, 1)
    progress = ledger.progress(engine, old)
    assert (progress.sent, progress.failed, progress.skipped, progress.done) == (5, 1, 1, 7)
    assert bounces.issue_counts(engine, [old])[old].bounces == 1  # bounce events are not the ledger's

    assert ledger_prune.prune(engine, older_than=30 * DAY, now=T0) == []  # idempotent
    assert ledger_prune.issue_totals(engine, old) == done[0].totals


def test_an_interrupted_prune_is_finished_by_the_next_without_recounting(engine: Engine) -> None:
    old = _sent_issue(engine, "old-news", finished=T0 - 40 * DAY)
    totals = ledger_prune._keep_totals(engine, old, now=T0)
    assert ledger_prune._delete_batch(engine, old, 3) == 3  # then the process died
    assert ledger.progress(engine, old).sent == 5  # the kept totals, not the 4 rows left
    done = ledger_prune.prune(engine, older_than=30 * DAY, now=T0 + DAY)
    assert [(p.totals, p.deleted) for p in done] == [(totals, 4)]
    assert _count(engine, old) == 0
    with engine.connect() as conn:
        stamped = conn.execute(sa.select(issues.c.ledger_pruned_at).where(issues.c.id == old)).scalar_one()
    assert stamped == T0  # the first run's stamp stands


def test_the_prune_command_prints_what_it_removed(tmp_path: Path, store_url: str) -> None:
    cfg = make_project(tmp_path, samples=False)
    engine = connect(store_url)
    add_subscribers(engine, 7)
    _sent_issue(engine, "old-news", finished=dt.datetime.now(dt.timezone.utc) - 40 * DAY)
    runner = CliRunner()
    result = runner.invoke(main, ["prune", "--older-than", "30d", "--config", str(cfg.source)])
    assert result.exit_code == 0, result.output
    assert "story old-news: 7 delivery rows deleted (kept: 7 recipients, 5 sent, 1 failed, 1 skipped)" in result.output
    assert "pruned 1 issue(s), 7 delivery rows" in result.output
    again = runner.invoke(main, ["prune", "--older-than", "30d", "--config", str(cfg.source)])
    assert again.exit_code == 0 and "pruned 0 issue(s), 0 delivery rows" in again.output
    shown = runner.invoke(main, ["deliveries", "old-news", "--config", str(cfg.source)])
    assert "7 recipients: 0 queued, 0 sending, 5 sent, 1 failed, 1 skipped" in shown.output
    assert "were pruned" in shown.output
    bad = runner.invoke(main, ["prune", "--older-than", "30 days", "--config", str(cfg.source)])
    assert bad.exit_code == 2 and "not an age like 30d" in bad.output


def test_a_store_at_the_previous_revision_upgrades_with_its_ledger_and_then_prunes(tmp_path: Path, store_url: str) -> None:
    if store_url.startswith("sqlite:///"):
        Path(store_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        alembic_upgrade(migrate._alembic_config(conn), "0003_signups_bounces")
    with engine.begin() as conn:  # an issue sent long ago, its ledger as 0003 kept it
        conn.execute(sa.text(
            "INSERT INTO issues (kind, key, state, cadence, subject, preheader, html, text, content_hash, "
            "created_at, updated_at, sent_at) VALUES ('story', 'old-news', 'sent', 'instant', 's', '', 'h', 't', 'x', "
            ":t, :t, :t)"), {"t": T0 - 40 * DAY})
        conn.execute(sa.text(
            "INSERT INTO subscribers (email, status, cadence, bounces, created_at) VALUES ('a@example.org', 'active', "
            "'instant', 0, :t), ('b@example.org', 'active', 'instant', 0, :t)"), {"t": T0})
        conn.execute(sa.text(
            "INSERT INTO deliveries (issue_id, subscriber_id, state, attempts) "
            "SELECT i.id, s.id, 'sent', 1 FROM issues i, subscribers s"))
    engine.dispose()
    store = connect(store_url)
    with pytest.raises(migrate.SchemaOutOfDate):
        migrate.ensure_current(store)
    assert migrate.upgrade(store) == ("0003_signups_bounces", migrate.head())
    migrate.ensure_current(store)
    summary = issues_store.story_summaries(store)["old-news"]
    assert (summary.recipients, summary.sent) == (2, 2)  # counted from the ledger until pruned
    [done] = ledger_prune.prune(store, older_than=30 * DAY, now=T0)
    assert (done.totals.sent, done.deleted) == (2, 2)
    assert issues_store.story_summaries(store)["old-news"].sent == 2
