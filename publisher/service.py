"""APScheduler wiring only: the scan, digest and drain jobs of ``publisher run``.

One BackgroundScheduler in the configured time zone, jobs registered by
fixed ids. Filesystem events (watchfiles) only *nudge* the scan job to run
now; polling stays the source of truth, so a missed event costs at most one
scan interval.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from .core.config import Config
from .core.errors import PublisherError
from .publish.pipeline import Pipeline
from .store.engine import Engine

log = logging.getLogger(__name__)

SCAN, FOLLOW_UP, DIGEST, DRAIN = "scan", "scan-follow-up", "digest", "drain"


class Service:
    """The scheduler plus the file watcher; ``start``/``stop`` from the CLI or tests."""

    def __init__(self, cfg: Config, engine: Engine, pipeline: Pipeline, *, deliver: bool = True) -> None:
        self.cfg = cfg
        self.engine = engine
        self.pipeline = pipeline
        self.deliver = deliver
        # APScheduler logs two lines per job run; a scan every 2 s would drown the events that matter.
        logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
        self.scheduler = BackgroundScheduler(timezone=cfg.site.tz, job_defaults={"coalesce": True, "max_instances": 1})
        self._stop = threading.Event()
        # Held while a job or the watcher changes the schedule, and while stop() marks the service
        # stopped: APScheduler's shutdown(wait=True) holds its job-store lock while it waits for the
        # running jobs, so a job that called add_job after that point waited for it forever (a
        # `publisher run` that never exited on SIGTERM). Under this lock, no job schedules anything
        # once the stop has been marked.
        self._scheduling = threading.Lock()
        self._watcher: threading.Thread | None = None
        self._events_live = threading.Event()  # the watcher is running
        self._paths_lock = threading.Lock()
        self._paths: set[str] = set()  # brief files named by events since the last scan
        self._full_needed = False  # an event the path list cannot express (a folder moved...)
        self._scanning = False  # a scan job is running: a nudge now queues one more scan after it
        self._again = False
        self._last_full = 0.0
        self._warmed = False  # the pipeline's warm-up ran (after the first full scan)

    # -- jobs (each logs and survives its own failures) ---------------------

    def scan(self, force: bool = False) -> None:
        """The scan job, and once more right after for any nudge that came while it ran.

        The scheduler runs one instance at a time and drops a run that is due
        while one is running, so an event during a scan would wait for the
        next tick; here all such nudges make one more scan (coalesced)."""
        with self._paths_lock:
            self._scanning, self._again = True, False
        try:
            while True:
                self._scan_once(force)
                force = False
                with self._paths_lock:
                    # Decided under the lock a nudge takes: none can fall between.
                    if not self._again or self._stop.is_set():
                        self._scanning = False
                        return
                    self._again = False
        except BaseException:
            with self._paths_lock:
                self._scanning = False
            raise

    def _scan_once(self, force: bool = False) -> None:
        """With file events live, a tick with no event since the last scan
        only scans when the safety-net interval is up: stat-ing ten thousand
        briefs every two seconds would be most of the idle CPU."""
        paths: list[str] | None = None
        sweep = False
        if not force and self._events_live.is_set():
            due = time.monotonic() - self._last_full >= self.cfg.schedule.full_scan_interval
            with self._paths_lock:
                named, self._paths = self._paths, set()
                needed, self._full_needed = self._full_needed, False
            if not named and not needed and not due:
                return
            # Events named these files: look at them alone (cost follows the change).
            paths = None if needed else sorted(named)
            # The safety net is a sweep (folder mtimes, inodes, a rotating slice: see
            # watch.Tree), not a full scan: idle CPU must not grow with the folder.
            sweep = due and not needed
        if paths is None or sweep:
            self._last_full = time.monotonic()
        self._scan_paths(paths, sweep)

    def _scan_paths(self, paths: list[str] | None, sweep: bool = False) -> None:
        try:
            result = self.pipeline.sweep(paths or ()) if sweep else self.pipeline.sync(paths)
        except PublisherError as exc:
            log.error("scan failed: %s", exc)
            return
        if paths is None and not sweep and not self._warmed:
            # The first full scan is done: what the first edit would load, load now.
            self._warmed = True
            try:
                self.pipeline.warm()
            except (PublisherError, OSError) as exc:  # the first edit loads it then
                log.warning("warm-up failed: %s", exc)
        if result.retry_after is not None:
            # A file is still being written, or a failed one's backoff ends:
            # look at it again then, not only at the next safety-net scan.
            when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=result.retry_after + 0.05)
            again = sorted({*result.waiting, *result.retrying})
            with self._scheduling:
                if not self._stop.is_set():
                    self.scheduler.add_job(self._scan_paths, "date", run_date=when, id=FOLLOW_UP, replace_existing=True,
                                           args=[again if paths is not None else None])

    def digest(self, cadence: str) -> None:
        try:
            self.pipeline.run_digest(cadence)
        except PublisherError as exc:
            log.error("%s digest failed: %s", cadence, exc)

    def drain(self) -> None:
        from .delivery.send import drain

        try:
            drain(self.cfg, self.engine, clock=self.pipeline.clock)
        except PublisherError as exc:
            log.error("delivery drain failed: %s", exc)

    # -- lifecycle --------------------------------------------------------

    def start(self) -> None:
        sched = self.cfg.schedule
        self.scheduler.add_job(self.scan, IntervalTrigger(seconds=sched.scan_interval), id=SCAN, replace_existing=True,
                               next_run_time=dt.datetime.now(dt.timezone.utc))
        for cadence, schedule in self.pipeline.digests.schedules.items():
            self.scheduler.add_job(self.digest, schedule.trigger, args=[cadence.value], id=f"{DIGEST}-{cadence.value}",
                                   replace_existing=True, misfire_grace_time=int(self.cfg.digests.max_lateness) or None)
        if self.deliver:
            self.scheduler.add_job(self.drain, IntervalTrigger(seconds=sched.drain_interval), id=DRAIN, replace_existing=True)
        self.scheduler.start()
        if sched.watch_events:
            self._watcher = threading.Thread(target=self._watch, name="brief-watcher", daemon=True)
            self._watcher.start()
        nxt = self.pipeline.next_digest_time()
        log.info("service started: scanning %s every %.1fs; next digest %s", self.cfg.paths.briefs, sched.scan_interval,
                 nxt.isoformat() if nxt else "never")

    def _watch(self) -> None:
        import watchfiles

        try:
            # yield_on_timeout: the first (possibly empty) yield proves the
            # watch is in place; only then may idle ticks rely on events. One
            # scan at that moment covers anything written while it was set up.
            for changes in watchfiles.watch(
                self.cfg.paths.briefs, stop_event=self._stop, force_polling=self.cfg.schedule.force_polling,
                # A quiet folder wakes Python only every 10 s (idle CPU); events
                # still arrive within the 50 ms debounce, and stop_event is
                # checked every step.
                debounce=50, step=50, rust_timeout=10_000, yield_on_timeout=True, raise_interrupt=False,
            ):
                if not self._events_live.is_set():
                    self._events_live.set()
                    self.nudge(None)  # one full scan covers the watch's set-up
                elif changes:
                    self.nudge([path for _change, path in changes])
        except (OSError, RuntimeError) as exc:
            log.warning("file events unavailable (%s); polling every %.1fs", exc, self.cfg.schedule.scan_interval)
        finally:
            # Without events, every tick of the scan job scans again.
            self._events_live.clear()

    def nudge(self, changed: Iterable[str] | None = None) -> None:
        """Run the scan job now: files (absolute paths) changed, or None for "scan everything"."""
        root = self.cfg.paths.briefs.resolve()
        with self._paths_lock:
            for raw in changed if changed is not None else ():
                path = Path(raw)
                try:
                    rel = path.resolve().relative_to(root)
                except ValueError:
                    continue  # outside the folder (a symlink target, say)
                if path.is_dir() or not path.suffix:
                    self._full_needed = True  # a folder appeared, moved or went
                elif not any(part.startswith(".") for part in rel.parts):
                    self._paths.add(rel.as_posix())
            if changed is None:
                self._full_needed = True
            if self._scanning:
                self._again = True  # the running scan job looks again when it is done
                return
        with self._scheduling:
            if self._stop.is_set():
                return
            try:
                self.scheduler.modify_job(SCAN, next_run_time=dt.datetime.now(dt.timezone.utc))
            except Exception as exc:  # the scheduler is not running (yet): the poll covers it
                log.debug("nudge ignored: %s", exc)

    def stop(self) -> None:
        with self._scheduling:
            self._stop.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)  # waits for running jobs
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        log.info("service stopped")


def jobs(service: Service) -> dict[str, Any]:
    return {job.id: job for job in service.scheduler.get_jobs()}
