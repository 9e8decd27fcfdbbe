"""Issues as editors move them: one email issue per story kept in step with it, and the
editors' release (approve, optionally at a time) and hold of story and digest issues.

Every state change is checked against :data:`publisher.core.states.TRANSITIONS`
and recorded with who made it; this module decides *which* move an event
calls for (a new story, an edit, an editor's approve or hold).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass

from ..core.clock import Clock
from ..core.config import Config
from ..core.errors import NotFound, StateError
from ..core.states import IssueState
from ..render.email import RenderedIssue, render_story
from ..store import issues, stories
from ..store.engine import Connection, Engine
from ..store.issues import IssueHead
from .briefcache import BriefCache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Released:
    """What an approval did: the issue's label, state, send time and whom it will reach."""

    label: str
    state: IssueState
    send_at: dt.datetime | None
    recipients: int
    changed: bool

    def describe(self) -> str:
        readers = f"{self.recipients} reader{'s' if self.recipients != 1 else ''}"
        if self.state is IssueState.SCHEDULED and self.send_at is not None:
            when = f"scheduled for {self.send_at.isoformat(timespec='minutes')}"
        else:
            when = "released to the next send"
        text = f"{self.label}: {when}, to {readers}"
        if self.recipients == 0:
            text += " (nobody yet: it stays approved and goes to the first readers who subscribe)"
        return text


def parse_target(target: str) -> tuple[str, str]:
    """``SLUG`` or ``digest:PERIOD`` → (kind, key)."""
    kind, sep, key = target.partition(":")
    if sep and kind == "digest" and key:
        return "digest", key
    return "story", target


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
            issues.update(conn, head, state, issue, now=now)
            log.info("issue %s re-rendered (%s)", slug, state.label)

    def _story_head(self, conn: Connection, slug: str) -> IssueHead:
        """The story's issue, created now for a story that has none (the back catalogue)."""
        story = stories.state(conn, slug)
        if story is None:
            raise NotFound("story", slug)
        if story.status == "draft":
            raise StateError(f"{slug} is a draft: set status: published in its front matter first")
        if story.deleted:
            raise StateError(f"{slug} was deleted from the briefs folder")
        head = issues.head(conn, "story", slug, lock=True)
        if head is None:
            self.sync(conn, slug, self._now(), draft=False)
            head = issues.head(conn, "story", slug, lock=True)
            assert head is not None
        return head

    def _head(self, conn: Connection, kind: str, key: str) -> IssueHead:
        if kind == "story":
            return self._story_head(conn, key)
        head = issues.head(conn, kind, key, lock=True)
        if head is None:
            raise NotFound(f"{kind} issue", key)
        return head

    def approve(self, target: str, *, actor: str, send_at: dt.datetime | None = None) -> Released:
        """Release an issue to the next send (or for ``send_at``); ``target`` is a slug or ``digest:PERIOD``."""
        kind, key = parse_target(target)
        if send_at is not None and send_at.tzinfo is None:
            raise StateError("a send time needs a time zone")
        with self.lock, self.engine.begin() as conn:
            head = self._head(conn, kind, key)
            now = self._now()
            target_state = IssueState.SCHEDULED if send_at is not None and send_at > now else IssueState.APPROVED
            changed = head.state is not target_state or head.send_at != (send_at if target_state is IssueState.SCHEDULED else None)
            if changed:
                issues.move(conn, head, target_state, now=now, actor=actor, send_at=send_at if target_state is IssueState.SCHEDULED else None)
                log.info("issue %s %s by %s", head.label, target_state.label, actor)
            return Released(head.label, target_state, send_at if target_state is IssueState.SCHEDULED else None,
                            issues.audience_size(conn, head.cadence), changed)

    def hold(self, target: str, *, actor: str) -> None:
        """Stop an issue from being sent until it is approved again (creating a story's issue if it has none)."""
        kind, key = parse_target(target)
        with self.lock, self.engine.begin() as conn:
            head = self._head(conn, kind, key)
            if head.state is IssueState.HELD:
                return
            issues.move(conn, head, IssueState.HELD, now=self._now(), actor=actor)
            log.info("issue %s held by %s", head.label, actor)

    def preview(self, slug: str) -> RenderedIssue:
        """The story's issue as a send would render it now."""
        with self.engine.connect() as conn:
            brief = self.cache.get(conn, slug)
        return render_story(brief, self.cfg)
