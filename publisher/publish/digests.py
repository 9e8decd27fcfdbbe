"""Digests: one schedule per cadence (daily, weekly), one issue per period, a web page for each.

:class:`DigestSchedule` is the one place that turns a cron into fire times,
period keys and labels, so the desk's preview and the stored digest can
never disagree about what a period is called. Each cadence keeps its own
cut-off: a story first seen after the last daily digest goes in the next
daily one, and likewise for weekly. Held, draft and deleted stories never
enter a digest.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import socket
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..briefs.model import Brief
from ..core.clock import Clock
from ..core.config import Config
from ..core.errors import NotFound, StateError
from ..core.states import DIGEST_CADENCES, Cadence, IssueState
from ..render.email import RenderedIssue, render_digest, web_text
from ..store import engine as kv
from ..store import issues, stories
from ..store.engine import Connection, Engine
from .briefcache import BriefCache
from .outputs import write_atomic
from .sitepages import write_digest_page

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DigestSchedule:
    cadence: Cadence
    cron: str  # five crontab fields
    tz: dt.tzinfo

    @classmethod
    def from_config(cls, cfg: Config) -> dict[Cadence, DigestSchedule]:
        crons = {Cadence.DAILY: cfg.digests.daily, Cadence.WEEKLY: cfg.digests.weekly}
        return {c: cls(c, cron, cfg.site.tz) for c, cron in crons.items() if cron}

    @functools.cached_property
    def trigger(self) -> CronTrigger:
        # Imported here: 50 ms of every start, for a site that has digests (config checks its crons then).
        from apscheduler.triggers.cron import CronTrigger

        return CronTrigger.from_crontab(self.cron, timezone=self.tz)

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

    def fire_of(self, key: str) -> dt.datetime:
        """The fire time a period key was made from (the inverse of :meth:`period_key`)."""
        if self.cadence is Cadence.WEEKLY:
            monday = dt.datetime.strptime(key + "-1", "%G-W%V-%u")
            return monday.replace(tzinfo=self.tz)
        return dt.datetime.strptime(key, "%Y-%m-%dT%H%M").replace(tzinfo=self.tz)

    def label(self, fire: dt.datetime) -> str:
        """How readers see the period ("Wednesday 02 January 2030", "Week of 30 December 2029")."""
        local = fire.astimezone(self.tz)
        if self.cadence is Cadence.WEEKLY:
            monday = local - dt.timedelta(days=local.weekday())
            return f"Week of {monday:%d %B %Y}"
        return local.strftime("%A %d %B %Y")


def service_actor() -> str:
    """Who a scheduled digest is by: the process, so that with a leader and a
    standby on one database the history says which one made it."""
    return f"service ({socket.gethostname()}/{os.getpid()})"


def cutoff_key(cadence: Cadence) -> str:
    return f"digest.cutoff:{cadence.value}"


LEGACY_CUTOFF = "digest.cutoff"  # before digests per cadence: the daily digest's cut-off


class Digests:
    """Making, previewing and catching up digests over the store."""

    def __init__(self, cfg: Config, engine: Engine, cache: BriefCache, clock: Clock, lock: threading.RLock) -> None:
        self.cfg = cfg
        self.engine = engine
        self.cache = cache
        self.clock = clock
        self.lock = lock
        self.schedules = DigestSchedule.from_config(cfg)

    def schedule(self, cadence: Cadence | str | None = None) -> DigestSchedule:
        """The schedule of ``cadence`` (None: the first configured one)."""
        if cadence is None:
            if not self.schedules:
                raise StateError("no digest is configured (digests.daily and digests.weekly are empty)")
            return next(iter(self.schedules.values()))
        wanted = Cadence(cadence)
        if wanted not in self.schedules:
            raise StateError(f"no {wanted.value} digest is configured (set digests.{wanted.value})")
        return self.schedules[wanted]

    def cutoff(self, conn: Connection, cadence: Cadence) -> dt.datetime | None:
        raw = kv.get_kv(conn, cutoff_key(cadence))
        if raw is None and cadence is Cadence.DAILY:
            raw = kv.get_kv(conn, LEGACY_CUTOFF)
        return dt.datetime.fromisoformat(raw) if raw else None

    def _briefs(self, conn: Connection, cadence: Cadence, until: dt.datetime) -> list[Brief]:
        return [self.cache.brief(conn, r) for r in stories.for_digest(conn, self.cutoff(conn, cadence), until)]

    def render(self, schedule: DigestSchedule, fire: dt.datetime, briefs: list[Brief]) -> RenderedIssue:
        """The digest of the period firing at ``fire``: the one function both the desk and a send use."""
        return render_digest(briefs, self.cfg, period_key=schedule.period_key(fire), period_label=schedule.label(fire))

    def upcoming(self, cadence: Cadence | str | None = None) -> tuple[DigestSchedule, dt.datetime, list[Brief], dt.datetime | None]:
        """The next period of ``cadence``: its schedule, fire time, the stories it would carry now, and the last cut-off."""
        schedule = self.schedule(cadence)
        now = self.clock()
        fire = schedule.next_fire(now) or now
        with self.engine.connect() as conn:
            return schedule, fire, self._briefs(conn, schedule.cadence, now), self.cutoff(conn, schedule.cadence)

    def next_fire(self) -> dt.datetime | None:
        fires = [f for s in self.schedules.values() if (f := s.next_fire(self.clock())) is not None]
        return min(fires, default=None)

    def _write_page(self, schedule: DigestSchedule, key: str, briefs: list[Brief], text: str) -> None:
        """issues/digest-KEY.html (the site's page of the digest) and .txt (its plain-text email, for everyone)."""
        write_digest_page(briefs, self.cfg, label=schedule.label(schedule.fire_of(key)), name=f"digest-{key}")
        write_atomic(self.cfg.paths.public / "issues" / f"digest-{key}.txt", text.encode("utf-8"))

    def rewrite_pages(self, conn: Connection) -> None:
        """The web page of every digest made so far (a full build rewrites public/ whole)."""
        for row in issues.digests(conn):
            schedule = self.schedules.get(Cadence(row.cadence)) or DigestSchedule(Cadence(row.cadence), "0 0 * * *", self.cfg.site.tz)
            briefs = []
            for slug in issues.members(conn, row.id):
                try:
                    briefs.append(self.cache.get(conn, slug))
                except NotFound:
                    continue  # a story deleted since: the page shows the rest
            rendered = RenderedIssue("digest", row.key, row.subject, row.preheader, "", row.html, row.text, row.content_hash)
            self._write_page(schedule, row.key, briefs, web_text(rendered, self.cfg))

    def make(self, schedule: DigestSchedule, fire: dt.datetime, *, until: dt.datetime | None = None, actor: str = "service") -> int | None:
        """The digest for the period that fires at ``fire``, with stories up to ``until`` (default: the fire time).

        Idempotent by period key: a period that has its digest gets no second one.
        """
        key = schedule.period_key(fire)
        cut = until or fire
        with self.lock, self.engine.begin() as conn:
            existing = issues.head(conn, "digest", key)
            if existing is not None:
                log.info("%s digest %s exists already", schedule.cadence.value, key)
                return existing.id
            briefs = self._briefs(conn, schedule.cadence, cut)
            kv.set_kv(conn, cutoff_key(schedule.cadence), cut.astimezone(dt.timezone.utc).isoformat())
            if not briefs:
                log.info("%s digest %s: no new stories, nothing to send", schedule.cadence.value, key)
                return None
            issue = self.render(schedule, fire, briefs)
            state = IssueState.AWAITING_APPROVAL if self.cfg.digests.require_approval else IssueState.APPROVED
            shown = [b for b in briefs if not b.is_draft]
            issue_id = issues.insert(
                conn, "digest", key, state, issue, now=self.clock(), cadence=schedule.cadence.value, actor=actor,
                members=[b.slug for b in shown],
            )
            self._write_page(schedule, key, shown, web_text(issue, self.cfg))
            log.info("%s digest %s %s with %d stories", schedule.cadence.value, key, state.label, len(briefs))
            return issue_id

    def make_now(self, cadence: Cadence | str, *, actor: str) -> int | None:
        """``publisher digest``: the current period's digest now, with the stories so far (idempotent)."""
        schedule = self.schedule(cadence)
        now = self.clock()
        fire = schedule.next_fire(now) or now
        return self.make(schedule, fire, until=now, actor=actor)

    def run(self, cadence: Cadence | str) -> int | None:
        """The cron job of ``cadence``: the digest of the period that has just fired."""
        schedule = self.schedule(cadence)
        fire = schedule.previous_fire(self.clock())
        return self.make(schedule, fire, actor=service_actor()) if fire is not None else None

    def catch_up(self) -> list[int]:
        """At start-up: make each cadence's digest missed while the service was down, if not too late."""
        made = []
        for cadence in DIGEST_CADENCES:
            if cadence in self.schedules and (issue_id := self._catch_up(self.schedules[cadence])) is not None:
                made.append(issue_id)
        return made

    def _catch_up(self, schedule: DigestSchedule) -> int | None:
        now = self.clock()
        with self.engine.begin() as conn:
            cutoff = self.cutoff(conn, schedule.cadence)
            if cutoff is None:
                # First start ever: nothing was missed. Stories from now on go in digests.
                kv.set_kv(conn, cutoff_key(schedule.cadence), now.astimezone(dt.timezone.utc).isoformat())
                return None
        fire = schedule.previous_fire(now)
        if fire is None or fire <= cutoff:
            return None
        key = schedule.period_key(fire)
        late = (now - fire).total_seconds()
        if late > self.cfg.digests.max_lateness:
            log.warning("%s digest %s missed by %.0fs (max_lateness %.0fs): skipped; its stories go in the next one",
                        schedule.cadence.value, key, late, self.cfg.digests.max_lateness)
            return None
        log.info("%s digest %s missed while down (%.0fs late): making it now", schedule.cadence.value, key, late)
        return self.make(schedule, fire, actor=service_actor())
