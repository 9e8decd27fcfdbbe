"""The real APScheduler service on a temp folder, and readers during rebuilds."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path

import feedparser
import pytest
from lxml import etree  # type: ignore[import-untyped]

from publisher import store
from publisher.core.config import Config
from publisher.publish.pipeline import Pipeline
from publisher.service import DIGEST, SCAN, Service, jobs
from tests.support.folders import brief, issue_state, make_cfg, put
from tests.support.postgres import store_url  # noqa: F401

# The service runs on SQLite and on a real PostgreSQL server alike.
pytestmark = pytest.mark.usefixtures("store_url")


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    # A deadline, not a timed assertion: the condition is what is tested.
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met")


def atom_ids(public: Path) -> list[str]:
    path = public / "feed.atom"
    if not path.exists():
        return []
    return [e.id for e in feedparser.parse(path.read_bytes()).entries]


def service(tmp_path: Path) -> tuple[Config, Service]:
    cfg = make_cfg(tmp_path, scan_interval=0.2, quiet_period=0.3, drain_interval=60.0)
    cfg.paths.briefs.mkdir(parents=True, exist_ok=True)
    engine = store.connect(cfg.store_url)
    svc = Service(cfg, engine, Pipeline(cfg, engine), deliver=False)
    return cfg, svc


@pytest.mark.slow
def test_service_publishes_dropped_and_chunked_briefs(tmp_path: Path) -> None:
    cfg, svc = service(tmp_path)
    svc.start()
    try:
        assert {SCAN, f"{DIGEST}-daily", f"{DIGEST}-weekly"} <= set(jobs(svc))
        (cfg.paths.briefs / "story-1.txt").write_bytes(brief(1))
        wait_for(lambda: any("story-1" in i for i in atom_ids(cfg.paths.public)))
        # Files are written inside the publishing transaction; its rows commit just after.
        wait_for(lambda: issue_state(svc.engine, "story-1") == "awaiting_approval")
        # Written slowly in chunks: never published half-written, published once.
        data = brief(2)
        with (cfg.paths.briefs / "story-2.txt").open("wb") as fh:
            for i in range(0, len(data), len(data) // 6 + 1):
                fh.write(data[i : i + len(data) // 6 + 1])
                fh.flush()
                time.sleep(0.15)  # shorter than the quiet period
        wait_for(lambda: any("story-2" in i for i in atom_ids(cfg.paths.public)))
        st = svc.pipeline.status()
        assert not st.errors
        assert (cfg.paths.public / "issues" / "story-2.html").read_bytes().count(b"</html>") == 1
        # A broken brief among good ones: recorded, nothing stops.
        (cfg.paths.briefs / "broken.txt").write_bytes(b"no heading\n")
        (cfg.paths.briefs / "story-3.txt").write_bytes(brief(3))
        wait_for(lambda: any("story-3" in i for i in atom_ids(cfg.paths.public)))
        wait_for(lambda: any("broken.txt" in e for _, e in svc.pipeline.status().errors))
        (cfg.paths.briefs / "story-1.txt").unlink()
        wait_for(lambda: not any("story-1" in i for i in atom_ids(cfg.paths.public)))
    finally:
        svc.stop()
    assert not svc.scheduler.running
    # Restart: nothing repeated.
    before = {p: p.stat().st_mtime_ns for p in cfg.paths.public.rglob("*") if p.is_file()}
    engine = store.connect(cfg.store_url)
    again = Pipeline(cfg, engine).sync()
    assert not again.published and not again.written
    assert before == {p: p.stat().st_mtime_ns for p in cfg.paths.public.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_readers_never_see_half_a_feed(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    for n in range(20):
        put(cfg.paths.briefs, f"story-{n}.txt", brief(n))
    engine = store.connect(cfg.store_url)
    pub = Pipeline(cfg, engine)
    pub.build_all(workers=1)
    stop = threading.Event()
    failures: list[str] = []

    def rebuild() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            put(cfg.paths.briefs, f"story-{n % 20}.txt", brief(n % 20, f" edit {n}"))
            pub.sync()

    writer = threading.Thread(target=rebuild)
    writer.start()
    reads = 0
    try:
        end = time.monotonic() + 3
        while time.monotonic() < end:
            for name in ("feed.atom", "feed.rss"):
                data = (cfg.paths.public / name).read_bytes()
                try:
                    etree.fromstring(data)
                except etree.XMLSyntaxError as exc:
                    failures.append(f"{name}: {exc}")
                reads += 1
    finally:
        stop.set()
        writer.join()
    assert reads > 10 and not failures


def test_idle_ticks_skip_the_full_scan_while_events_work(tmp_path: Path) -> None:
    cfg, svc = service(tmp_path)
    calls: list[list[str] | None] = []
    real_sync = svc.pipeline.sync

    def counting_sync(paths: list[str] | None = None) -> object:
        calls.append(None if paths is None else list(paths))
        return real_sync(paths)

    svc.pipeline.sync = counting_sync  # type: ignore[method-assign]
    svc._events_live.set()  # as if the watcher thread were running
    svc.scan()  # the first tick always scans the whole folder
    svc.scan()
    svc.scan()
    assert calls == [None]  # idle ticks within full_scan_interval do nothing
    (cfg.paths.briefs / "story-9.txt").write_bytes(brief(9))
    svc.nudge([str(cfg.paths.briefs / "story-9.txt"), str(cfg.paths.briefs / ".hidden.txt")])
    svc.scan()
    assert calls[-1] == ["story-9.txt"]  # only the file the event named
    (cfg.paths.briefs / "sub").mkdir()
    svc.nudge([str(cfg.paths.briefs / "sub")])  # a folder: only a full scan can tell
    svc.scan()
    assert calls[-1] is None
    svc._events_live.clear()  # events died: every tick polls the whole folder again
    svc.scan()
    svc.scan()
    assert calls[-2:] == [None, None]


def test_a_nudge_during_a_scan_runs_one_more_scan_right_after(tmp_path: Path) -> None:
    cfg, svc = service(tmp_path)
    calls: list[list[str] | None] = []
    real_sync = svc.pipeline.sync

    def sync_with_events_meanwhile(paths: list[str] | None = None) -> object:
        calls.append(None if paths is None else list(paths))
        if len(calls) == 2:
            # Three events arrive while this scan runs: the scheduler would drop
            # their nudges (one instance at a time), so the job itself goes again.
            for n in (7, 8, 7):
                (cfg.paths.briefs / f"story-{n}.txt").write_bytes(brief(n))
                svc.nudge([str(cfg.paths.briefs / f"story-{n}.txt")])
        return real_sync(paths)

    svc.pipeline.sync = sync_with_events_meanwhile  # type: ignore[method-assign]
    svc._events_live.set()
    svc.scan()  # the first tick scans the whole folder
    (cfg.paths.briefs / "story-9.txt").write_bytes(brief(9))
    svc.nudge([str(cfg.paths.briefs / "story-9.txt")])
    svc.scan()
    # One more scan, coalesced, for everything named during the second.
    assert calls == [None, ["story-9.txt"], ["story-7.txt", "story-8.txt"]]
    svc.scan()
    assert len(calls) == 3  # nothing queued: the next tick is idle again


def test_the_first_full_scan_warms_the_pipeline_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, svc = service(tmp_path)
    (cfg.paths.briefs / "story-1.txt").write_bytes(brief(1))
    warmed: list[int] = []
    original = svc.pipeline.warm
    monkeypatch.setattr(svc.pipeline, "warm", lambda: (warmed.append(1), original())[1])
    svc._scan_paths(None)
    svc._scan_paths(None)
    svc._scan_paths(["story-1.txt"])
    assert warmed == [1]
    # Warm: the site's lists are loaded, so the next edit reads only its own story's listing.
    assert svc.pipeline.outputs.site._listing is not None


def test_stop_returns_while_a_job_is_scheduling_its_follow_up(tmp_path: Path) -> None:
    # APScheduler's shutdown(wait=True) holds its job-store lock while it
    # waits for running jobs. A scan job that was about to schedule its
    # follow-up (a file still being written) when stop() began then waited
    # for that lock forever: `publisher run` hung on SIGTERM under load. The
    # window is widened here: the follow-up's add_job starts only once
    # stop() has been called.
    from publisher.service import FOLLOW_UP

    cfg, svc = service(tmp_path)
    entered, stopping = threading.Event(), threading.Event()
    original = svc.scheduler.add_job

    def slow_add_job(*args: object, **kwargs: object) -> object:
        if kwargs.get("id") == FOLLOW_UP and not entered.is_set():
            entered.set()
            stopping.wait(10)
            time.sleep(0.3)  # stop() is well into the scheduler's shutdown by now, if it got there
        return original(*args, **kwargs)

    svc.scheduler.add_job = slow_add_job
    svc.start()
    (cfg.paths.briefs / "fresh.txt").write_bytes(brief(1))  # younger than the quiet period: a follow-up is scheduled
    wait_for(entered.is_set)
    stopper = threading.Thread(target=svc.stop, daemon=True)
    stopping.set()
    stopper.start()
    stopper.join(15)
    assert not stopper.is_alive(), "stop() deadlocked with a job scheduling its follow-up"
