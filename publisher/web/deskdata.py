"""What the desk shows: the newsroom in one view, and previews of issues as they will be sent.

All blocking, called from the thread pool. Briefs come from the pipeline's
one brief cache (``DeskActions.story_brief``), lint findings from
``Brief.findings``; rendered previews are cached by content, and the page
and its frames asking at once share one render.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import LRUCache

from ..briefs.model import Brief, Finding
from ..core.clock import Clock
from ..core.config import Config
from ..core.errors import BriefError, NotFound
from ..core.states import CADENCES, DESK_ORDER, SUBSCRIBER_STATUSES
from ..render.email import RenderedIssue
from ..store import bounces, files, issues, stories, subscribers
from ..store.engine import Engine
from ..store.files import BrokenFile
from ..store.issues import IssueEvent, IssueSummary
from .context import DeskActions
from .preview import Preview, preview_from_issue


@dataclass(frozen=True)
class StoryRow:
    slug: str
    title: str
    path: str
    status: str
    state: str
    issue_id: int | None
    updated_at: dt.datetime | None
    created_at: dt.datetime | None
    deleted: bool
    error: str | None
    findings: tuple[Finding, ...]
    issue: IssueSummary | None  # recipients and delivery progress
    bounces: int = 0  # of the story's issue: hard and soft bounces, SMTP and asynchronous
    complaints: int = 0

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity == "error") + (1 if self.error else 0)

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.severity == "warning")


@dataclass(frozen=True)
class DigestPreview:
    """The next digest of one cadence, or why there is none yet."""

    cadence: str
    key: str
    label: str
    fire: dt.datetime
    briefs: list[Brief]
    since: dt.datetime | None  # the last digest's cut-off
    preview: Preview | None  # None: no story to send yet


PreviewKey = tuple[str, str, str]  # (kind, key, content fingerprint)
RenderCall = Callable[[], RenderedIssue]


def _order(row: StoryRow) -> tuple[int, float]:
    """Awaiting approval first, then scheduled, then the rest; newest first within each."""
    rank = next((i for i, s in enumerate(DESK_ORDER) if s == row.state), len(DESK_ORDER))
    return rank, -(row.created_at.timestamp() if row.created_at else 0.0)


class Desk:
    def __init__(self, cfg: Config, engine: Engine, actions: DeskActions, clock: Clock) -> None:
        self.cfg = cfg
        self.engine = engine
        self.actions = actions
        self.clock = clock
        self._previews: LRUCache[PreviewKey, Preview] = LRUCache(maxsize=64)
        self._flights: dict[PreviewKey, threading.Lock] = {}
        self._lock = threading.Lock()

    def _findings(self, slug: str) -> tuple[Finding, ...]:
        try:
            return self.actions.story_brief(slug).findings
        except BriefError as exc:  # a stored source that no longer parses (e.g. base_url changed)
            return (Finding(exc.path, exc.line, "error", exc.message),)

    def stories(self, slug: str | None = None) -> list[StoryRow]:
        with self.engine.connect() as conn:
            rows = stories.listing(conn, slug)
        summaries = issues.story_summaries(self.engine)
        counts = bounces.issue_counts(self.engine, [r.issue_id for r in rows if r.issue_id is not None])
        none = bounces.IssueCounts()
        out = [
            StoryRow(
                slug=r.slug, title=r.title, path=r.path, status=r.status, state=r.state, issue_id=r.issue_id,
                updated_at=r.updated_at, created_at=r.created_at, deleted=r.deleted, error=r.error,
                findings=self._findings(r.slug), issue=summaries.get(r.slug),
                bounces=counts.get(r.issue_id or 0, none).bounces, complaints=counts.get(r.issue_id or 0, none).complaints,
            )
            for r in rows
        ]
        return sorted(out, key=_order)

    def story(self, slug: str) -> StoryRow:
        for row in self.stories(slug):
            return row
        raise NotFound("story", slug)

    def broken_files(self) -> list[BrokenFile]:
        with self.engine.connect() as conn:
            return files.broken(conn)

    def subscriber_counts(self) -> dict[str, dict[str, int]]:
        """cadence → status → count, every cell present."""
        counts = subscribers.counts_by_cadence(self.engine)
        return {c: {s: counts.get((s, c), 0) for s in SUBSCRIBER_STATUSES} for c in CADENCES}

    def digests(self) -> list[IssueSummary]:
        return issues.recent_digests(self.engine)

    def history(self, kind: str, key: str) -> list[IssueEvent]:
        issue_id = issues.issue_id(self.engine, kind, key)
        return [] if issue_id is None else issues.history(self.engine, issue_id)

    def issue_id(self, kind: str, key: str) -> int | None:
        return issues.issue_id(self.engine, kind, key)

    def fingerprint(self, kind: str, key: str) -> str:
        """Changes whenever what the preview shows could change (cheap: two small reads)."""
        with self.engine.connect() as conn:
            return stories.fingerprint(conn, kind, key)

    def _flight(self, key: PreviewKey) -> threading.Lock:
        with self._lock:
            if len(self._flights) > 256:
                self._flights.clear()
            return self._flights.setdefault(key, threading.Lock())

    def _preview(self, key: PreviewKey, render: RenderCall) -> Preview:
        # The page and its frames ask at once; one renders, the others wait for it.
        with self._flight(key):
            with self._lock:
                hit = self._previews.get(key)
            if hit is not None:
                return hit
            preview = preview_from_issue(render(), self.cfg, sent_at=self.clock())
            with self._lock:
                self._previews[key] = preview
            return preview

    def story_preview(self, slug: str) -> tuple[Preview, Brief]:
        brief = self.actions.story_brief(slug)
        return self._preview(("story", slug, brief.content_hash), lambda: self.actions.preview_story(slug)), brief

    def rendered_story(self, slug: str) -> RenderedIssue:
        return self.actions.preview_story(slug)

    def digest_preview(self, cadence: str | None = None) -> DigestPreview:
        schedule, fire, briefs, since = self.actions.next_digest(cadence)
        key = schedule.period_key(fire)
        out = DigestPreview(schedule.cadence.value, key, schedule.label(fire), fire, briefs, since, None)
        published = [b for b in briefs if not b.is_draft]
        if not published:
            return out
        fingerprint = hashlib.sha256("\n".join(b.content_hash for b in published).encode()).hexdigest()
        preview = self._preview(("digest", key, fingerprint), lambda: self.actions.render_digest(schedule, fire, briefs))
        return DigestPreview(out.cadence, key, out.label, fire, briefs, since, preview)

    def rendered_digest(self, cadence: str | None = None) -> RenderedIssue:
        schedule, fire, briefs, _since = self.actions.next_digest(cadence)
        return self.actions.render_digest(schedule, fire, briefs)
