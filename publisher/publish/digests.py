"""Digests: the schedule (cron in the site's time zone) and making one issue per period.

:class:`DigestSchedule` is the one place that turns the cron into fire
times, period keys and labels, so the desk's preview and the stored digest
can never disagree about what a period is called.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
from dataclasses import dataclass

from apscheduler.triggers.cron import CronTrigger

from ..briefs.model import Brief
from ..core.clock import Clock
from ..core.config import Config
from ..core.states import Cadence, IssueState
from ..render.email import RenderedIssue, render_digest
from ..store import engine as kv
from ..store import issues, stories
from ..store.engine import Engine
from .briefcache import BriefCache

log = logging.getLogger(__name__)

CUTOFF_KEY = "digest.cutoff"  # the last period's fire time: stories first seen after it are new


@dataclass(frozen=True)
class DigestSchedule:
    cron: str  # five crontab fields
    tz: dt.tzinfo

    @classmethod
    def from_config(cls, cfg: Config) -> DigestSchedule | None:
        return cls(cfg.schedule.digest_cron, cfg.site.tz) if cfg.schedule.digest_cron else None

    @functools.cached_property
    def trigger(self) -> CronTrigger:
        return CronTrigger.from_crontab(self.cron, timezone=self.tz)

    @property
    def cadence(self) -> Cadence:
        """Weekly when the cron names a weekday, else daily."""
        return Cadence.WEEKLY if self.cron.split()[4] != "*" else Cadence.DAILY

    def next_fire(self, after: dt.datetime) -> dt.datetime | None:
        fire: dt.datetime | None = self.trigger.get_next_fire_time(None, after.astimezone(self.tz))
        return fire

    def previous_fire(self, now: dt.datetime) -> dt.datetime | None:
        """The last fire time at or before ``now`` (searching back 8 days)."""
        now = now.astimezone(self.tz)
        fire = self.trigger.get_next_fire_time(None, now - dt.timedelta(days=8))
        last = None
        while fire is not None and fire <= now:
            last = fire
            fire = self.trigger.get_next_fire_time(fire, fire + dt.timedelta(seconds=1))
        return last

    def period_key(self, fire: dt.datetime) -> str:
        local = fire.astimezone(self.tz)
        if self.cadence is Cadence.WEEKLY:
            year, week, _ = local.isocalendar()
            return f"{year}-W{week:02d}"
        return local.strftime("%Y-%m-%dT%H%M")

    def label(self, fire: dt.datetime) -> str:
        """How readers see the period ("Wednesday 02 January 2030")."""
        return fire.astimezone(self.tz).strftime("%A %d %B %Y")


class Digests:
    """Making, previewing and catching up digests over the store."""

    def __init__(self, cfg: Config, engine: Engine, cache: BriefCache, clock: Clock, lock: threading.RLock) -> None:
        self.cfg = cfg
        self.engine = engine
        self.cache = cache
        self.clock = clock
        self.lock = lock
        self.schedule = DigestSchedule.from_config(cfg)

    def _cutoff(self, conn: kv.Connection) -> dt.datetime | None:
        raw = kv.get_kv(conn, CUTOFF_KEY)
        return dt.datetime.fromisoformat(raw) if raw else None

    def _briefs(self, conn: kv.Connection, until: dt.datetime) -> list[Brief]:
        return [self.cache.brief(conn, r) for r in stories.for_digest(conn, self._cutoff(conn), until)]

    def render(self, fire: dt.datetime, briefs: list[Brief]) -> RenderedIssue:
        """The digest of the period firing at ``fire``: the one function both the desk and a send use."""
        assert self.schedule is not None
        return render_digest(
            briefs, self.cfg, period_key=self.schedule.period_key(fire), period_label=self.schedule.label(fire)
        )

    def upcoming(self) -> tuple[dt.datetime, list[Brief]]:
        """The next period's fire time and the stories it would carry if it fired now."""
        now = self.clock()
        fire = (self.schedule.next_fire(now) if self.schedule else None) or now
        with self.engine.connect() as conn:
            return fire, self._briefs(conn, now)

    def next_fire(self) -> dt.datetime | None:
        return self.schedule.next_fire(self.clock()) if self.schedule else None

    def make(self, fire: dt.datetime) -> int | None:
        """The digest for the period that fires at ``fire``; idempotent by period key."""
        if self.schedule is None:
            return None
        key = self.schedule.period_key(fire)
        with self.lock, self.engine.begin() as conn:
            if issues.exists(conn, "digest", key):
                log.info("digest %s exists already", key)
                return None
            briefs = self._briefs(conn, fire)
            kv.set_kv(conn, CUTOFF_KEY, fire.astimezone(dt.timezone.utc).isoformat())
            if not briefs:
                log.info("digest %s: no new stories, nothing to send", key)
                return None
            issue_id = issues.insert(conn, "digest", key, IssueState.APPROVED, self.render(fire, briefs), now=self.clock())
            log.info("digest %s queued with %d stories", key, len(briefs))
            return issue_id

    def run(self) -> int | None:
        """The cron job: the digest of the period that has just fired."""
        fire = self.schedule.previous_fire(self.clock()) if self.schedule else None
        return self.make(fire) if fire is not None else None

    def catch_up(self) -> int | None:
        """At start-up: make a digest missed while the service was down, if not too late."""
        now = self.clock()
        with self.engine.begin() as conn:
            cutoff = self._cutoff(conn)
            if cutoff is None:
                # First start ever: nothing was missed. Stories from now on go in digests.
                kv.set_kv(conn, CUTOFF_KEY, now.astimezone(dt.timezone.utc).isoformat())
                return None
        fire = self.schedule.previous_fire(now) if self.schedule else None
        if self.schedule is None or fire is None or fire <= cutoff:
            return None
        key = self.schedule.period_key(fire)
        late = (now - fire).total_seconds()
        if late > self.cfg.schedule.digest_max_lateness:
            log.warning("digest %s missed by %.0fs (max_lateness %.0fs): skipped; its stories go in the next digest",
                        key, late, self.cfg.schedule.digest_max_lateness)
            return None
        log.info("digest %s missed while down (%.0fs late): making it now", key, late)
        return self.make(fire)
