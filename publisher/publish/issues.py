"""Story issues: one email issue per story, kept in step with it until it is sent.

Every state change goes through :func:`publisher.core.states.check_move`,
so the allowed moves live in one table; this module decides *which* move
an event calls for (a new story, an edit, an editor's approve or hold).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

from ..core.clock import Clock
from ..core.config import Config
from ..core.errors import NotFound, StateError
from ..core.states import IssueState, check_move
from ..render.email import RenderedIssue, render_story
from ..store import issues, stories
from ..store.engine import Connection, Engine
from .briefcache import BriefCache

log = logging.getLogger(__name__)


class StoryIssues:
    def __init__(self, cfg: Config, engine: Engine, cache: BriefCache, clock: Clock, lock: threading.RLock) -> None:
        self.cfg = cfg
        self.engine = engine
        self.cache = cache
        self.clock = clock
        self.lock = lock

    def _now(self) -> dt.datetime:
        return self.clock().astimezone(dt.timezone.utc)

    def _fresh_state(self) -> IssueState:
        return IssueState.AWAITING_APPROVAL if self.cfg.schedule.require_approval else IssueState.APPROVED

    def sync(self, conn: Connection, slug: str, now: dt.datetime, *, draft: bool, rendered: RenderedIssue | None = None) -> None:
        """Create or re-render the story's issue after the story changed; never once it is sending or sent."""
        head = issues.head(conn, "story", slug)
        if head is not None and not head.state.is_open:
            log.info("story %s changed after its issue was %s: not re-sent", slug, head.state.label)
            return
        issue = rendered or render_story(self.cache.get(conn, slug), self.cfg)
        if draft:
            state = IssueState.DRAFT
        elif head is None or head.state is IssueState.DRAFT:
            state = self._fresh_state()
        else:
            state = head.state
        if head is None:
            issues.insert(conn, "story", slug, state, issue, now=now)
            log.info("issue %s %s", slug, state.label)
        elif head.content_hash != issue.content_hash or head.state is not state:
            if head.state is not state:
                check_move(f"story {slug} issue", head.state, state)
            issues.update(conn, head, state, issue, now=now)
            log.info("issue %s re-rendered (%s)", slug, state.label)

    def approve(self, slug: str) -> None:
        """Release a story's issue (creating it for a story from the back catalogue)."""
        with self.lock, self.engine.begin() as conn:
            story = stories.state(conn, slug)
            if story is None:
                raise NotFound("story", slug)
            if story.status == "draft":
                raise StateError(f"{slug} is a draft: set status: published in its front matter first")
            if story.deleted:
                raise StateError(f"{slug} was deleted from the briefs folder")
            now = self._now()
            head = issues.head(conn, "story", slug, lock=True)
            if head is None:
                self.sync(conn, slug, now, draft=False)
                head = issues.head(conn, "story", slug, lock=True)
                assert head is not None
            if head.state is IssueState.APPROVED:
                return
            check_move(f"story {slug} issue", head.state, IssueState.APPROVED)
            issues.move(conn, head, IssueState.APPROVED, now=now)
            log.info("issue %s approved", slug)

    def hold(self, slug: str) -> None:
        """Stop a story's issue from being sent until it is approved again."""
        with self.lock, self.engine.begin() as conn:
            head = issues.head(conn, "story", slug, lock=True)
            if head is None:
                raise NotFound("story issue", slug)
            if head.state is IssueState.HELD:
                return
            check_move(f"story {slug} issue", head.state, IssueState.HELD)
            issues.move(conn, head, IssueState.HELD, now=self._now())
            log.info("issue %s held", slug)

    def preview(self, slug: str) -> RenderedIssue:
        """The story's issue as a send would render it now."""
        with self.engine.connect() as conn:
            brief = self.cache.get(conn, slug)
        return render_story(brief, self.cfg)
