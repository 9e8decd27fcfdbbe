"""The delivery ledger: claims, retries, recovery, issue states."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from publisher.core.errors import StateError
from publisher.store.schema import deliveries, issues
from publisher.core import addresses
from publisher.store import deliveries as ledger
from publisher.store import issues as issues_store

from tests.support.smtp import T0, add_issue, add_subscribers, make_cfg, make_store


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return make_store(make_cfg(tmp_path))


@pytest.fixture
def issue_id(tmp_path: Path, engine: Engine) -> int:
    return add_issue(engine)


@pytest.mark.parametrize(
    ("raw", "normal"),
    [("Reader@Example.ORG", "reader@example.org"), ("  a.b+tag@sub.example.net\t", "a.b+tag@sub.example.net")],
)
def test_normalize_email(raw: str, normal: str) -> None:
    assert addresses.normalize_email(raw) == normal


@pytest.mark.parametrize(
    "raw",
    ["", "no-at-sign", "a@b", "a@@example.org", "a@example.org\r\nBcc: x@y.org", "<a@example.org>",
     "a@example.org, b@example.org", ".a@example.org", "a" * 250 + "@example.org"],
)
def test_invalid_addresses_are_refused(raw: str) -> None:
    with pytest.raises(addresses.InvalidAddress):
        addresses.normalize_email(raw)


def test_start_issue_creates_rows_once_for_the_right_audience(engine: Engine, issue_id: int) -> None:
    add_subscribers(engine, 5)
    add_subscribers(engine, 3, cadence="daily", start=10)
    add_subscribers(engine, 2, status="pending", start=20)
    add_subscribers(engine, 2, status="unsubscribed", start=30)
    issue, created = issues_store.start_issue(engine, issue_id, now=T0)
    assert (issue.state, created) == ("sending", 5)
    add_subscribers(engine, 1, start=40)  # joins mid-send: waits for the next issue
    assert issues_store.start_issue(engine, issue_id, now=T0)[1] == 0
    assert ledger.progress(engine, issue_id).queued == 5


def test_a_digest_reaches_the_subscribers_of_its_own_cadence(engine: Engine) -> None:
    add_subscribers(engine, 2, cadence="daily")
    add_subscribers(engine, 3, cadence="weekly", start=10)
    add_subscribers(engine, 4, cadence="instant", start=20)
    daily = add_issue(engine, kind="digest", key="2026-11-28T0700", cadence="daily")
    weekly = add_issue(engine, kind="digest", key="2026-W48", cadence="weekly")
    assert issues_store.start_issue(engine, daily, now=T0)[1] == 2
    assert issues_store.start_issue(engine, weekly, now=T0)[1] == 3


def test_an_issue_that_reaches_nobody_stays_released_until_someone_subscribes(engine: Engine, issue_id: int) -> None:
    issue, created = issues_store.start_issue(engine, issue_id, now=T0)
    assert (issue.state, created) == ("approved", 0)
    assert issues_store.get_issue(engine, issue_id).state == "approved"
    add_subscribers(engine, 1)
    issue, created = issues_store.start_issue(engine, issue_id, now=T0)
    assert (issue.state, created) == ("sending", 1)
    assert [(e.from_state, e.to_state) for e in issues_store.history(engine, issue_id)][-1] == ("approved", "sending")


def test_only_approved_issues_start(engine: Engine, tmp_path: Path) -> None:
    held = add_issue(engine, state="held")
    with pytest.raises(StateError):
        issues_store.start_issue(engine, held, now=T0)
    assert ledger.progress(engine, held).total == 0


def test_concurrent_claims_never_share_a_row(engine: Engine, issue_id: int) -> None:
    add_subscribers(engine, 600)
    issues_store.start_issue(engine, issue_id, now=T0)
    got: dict[str, list[int]] = {}

    def worker(name: str) -> None:
        mine = got.setdefault(name, [])
        while True:
            batch = ledger.claim(engine, issue_id, name, 7, now=T0)
            if not batch:
                return
            mine.extend(c.delivery_id for c in batch)

    threads = [threading.Thread(target=worker, args=(f"host:1:w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    all_ids = [i for ids in got.values() for i in ids]
    assert len(all_ids) == 600 and len(set(all_ids)) == 600
    assert ledger.progress(engine, issue_id).sending == 600


def test_failures_back_off_then_fail(engine: Engine, issue_id: int) -> None:
    (email,) = add_subscribers(engine, 1)
    issues_store.start_issue(engine, issue_id, now=T0)
    now = T0
    for attempt in range(1, 4):
        (c,) = ledger.claim(engine, issue_id, "h:1:x", 10, now=now)
        assert c.email == email and c.attempts == attempt - 1
        failure = ledger.Failure(c.delivery_id, c.subscriber_id, "451 later", False, c.attempts)
        retrying, failed, _ = ledger.mark_failed(engine, [failure], now=now, max_attempts=3, backoff=10, bounce_after=1)
        delay = 10 * 2 ** (attempt - 1)
        if attempt < 3:
            assert (retrying, failed) == (1, 0)
            # not due yet
            assert ledger.claim(engine, issue_id, "h:1:x", 10, now=now + dt.timedelta(seconds=delay - 1)) == []
            assert ledger.next_retry(engine, issue_id) == now + dt.timedelta(seconds=delay)
            now = now + dt.timedelta(seconds=delay)
        else:
            assert (retrying, failed) == (0, 1)
    assert ledger.progress(engine, issue_id).failed == 1
    assert ledger.next_retry(engine, issue_id) is None
    assert issues_store.finish_issue(engine, issue_id, now=now) is True


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_recover_requeues_dead_local_workers_at_once_and_others_after_the_lease(engine: Engine, issue_id: int) -> None:
    import socket

    add_subscribers(engine, 30)
    issues_store.start_issue(engine, issue_id, now=T0)
    host = socket.gethostname()
    dead = f"{host}:{_dead_pid()}:aaaa"
    alive = ledger.worker_id()  # this very process
    remote = "elsewhere:1:bbbb"
    for name in (dead, alive, remote):
        assert len(ledger.claim(engine, issue_id, name, 10, now=T0)) == 10
    assert ledger.recover(engine, now=T0 + dt.timedelta(seconds=5), lease=600) == 10
    assert ledger.progress(engine, issue_id).sending == 20
    assert ledger.recover(engine, now=T0 + dt.timedelta(seconds=601), lease=600) == 20
    assert ledger.progress(engine, issue_id) == ledger.Progress(queued=30)


def test_mark_sent_and_finish(engine: Engine, issue_id: int) -> None:
    add_subscribers(engine, 3)
    issues_store.start_issue(engine, issue_id, now=T0)
    claimed = ledger.claim(engine, issue_id, "h:1:x", 2, now=T0)
    ledger.mark_sent(engine, [c.delivery_id for c in claimed], now=T0)
    assert issues_store.finish_issue(engine, issue_id, now=T0) is False
    (last,) = ledger.claim(engine, issue_id, "h:1:x", 2, now=T0)
    ledger.mark_sent(engine, [last.delivery_id], now=T0)
    assert issues_store.finish_issue(engine, issue_id, now=T0) is True
    with engine.connect() as conn:
        row = conn.execute(sa.select(issues.c.state, issues.c.sent_at).where(issues.c.id == issue_id)).one()
        attempts = conn.execute(sa.select(deliveries.c.attempts)).scalars().all()
    assert row.state == "sent" and row.sent_at is not None
    assert attempts == [1, 1, 1]
