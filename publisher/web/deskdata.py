"""What the desk shows: the story list with lint findings, and previews of issues as sent.

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
from ..render.email import RenderedIssue
from ..store import bounces, issues, stories
from ..store.engine import Engine
from ..store.issues import IssueSummary
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
    deleted: bool
    error: str | None
    findings: tuple[Finding, ...]
    bounces: int = 0  # of the story's issue: hard and soft bounces, SMTP and asynchronous
    complaints: int = 0

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity == "error") + (1 if self.error else 0)

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.severity == "warning")


PreviewKey = tuple[str, str, str]  # (kind, key, content fingerprint)
RenderCall = Callable[[], RenderedIssue]


class Desk:
    def __init__(self, cfg: Config, engine: Engine, actions: DeskActions, clock: Clock) -> None:
        self.cfg = cfg
        self.engine = engine
        self.actions = actions
        self.clock = clock
        self._previews: LRUCache[PreviewKey, Preview] = LRUCache(maxsize=64)
        self._flights: dict[PreviewKey, threading.Lock] = {}
        self._lock = threading.Lock()

    def _findings(self, slug: str, path: str) -> tuple[Finding, ...]:
        try:
            return self.actions.story_brief(slug).findings
        except BriefError as exc:  # a stored source that no longer parses (e.g. base_url changed)
            return (Finding(exc.path, exc.line, "error", exc.message),)

    def stories(self, slug: str | None = None) -> list[StoryRow]:
        with self.engine.connect() as conn:
            rows = stories.listing(conn, slug)
        counts = bounces.issue_counts(self.engine, [r.issue_id for r in rows if r.issue_id is not None])
        none = bounces.IssueCounts()
        return [
            StoryRow(
                slug=r.slug, title=r.title, path=r.path, status=r.status, state=r.state, issue_id=r.issue_id,
                updated_at=r.updated_at, deleted=r.deleted, error=r.error, findings=self._findings(r.slug, r.path),
                bounces=counts.get(r.issue_id or 0, none).bounces, complaints=counts.get(r.issue_id or 0, none).complaints,
            )
            for r in rows
        ]

    def story(self, slug: str) -> StoryRow:
        for row in self.stories(slug):
            return row
        raise NotFound("story", slug)

    def digests(self) -> list[IssueSummary]:
        return issues.recent_digests(self.engine)

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

    def digest_preview(self) -> tuple[Preview, list[Brief]]:
        fire, briefs = self.actions.next_digest()
        fingerprint = hashlib.sha256("\n".join(b.content_hash for b in briefs).encode()).hexdigest()
        key = ("digest", fire.isoformat(), fingerprint)
        return self._preview(key, lambda: self.actions.render_digest(fire, briefs)), briefs

    def rendered_digest(self) -> RenderedIssue:
        fire, briefs = self.actions.next_digest()
        return self.actions.render_digest(fire, briefs)

