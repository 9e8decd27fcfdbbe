"""Story queries: one row per slug with the last good source, dates and feed tags.

Tag and entity keys are stored newline-framed (``"\\nai\\nchips\\n"``) so a
tag feed's newest stories are one indexed query, without parsing briefs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..core.errors import NotFound
from ..core.states import IssueState
from .schema import files, issues, stories
from .subscribers import utc


def frame(tags: Iterable[str]) -> str:
    tags = list(tags)
    return "\n" + "\n".join(tags) + "\n" if tags else ""


def unframe(text: str) -> set[str]:
    return {t for t in text.split("\n") if t}


@dataclass(frozen=True, slots=True)
class StoryRef:
    """A story without its source (the big column): enough to find or cache its brief."""

    slug: str
    path: str
    content_hash: str
    published_at: dt.datetime
    updated_at: dt.datetime


_REF = (stories.c.slug, stories.c.path, stories.c.content_hash, stories.c.published_at, stories.c.updated_at)


def _ref(row: Any) -> StoryRef:
    return StoryRef(row.slug, row.path, row.content_hash, row.published_at, row.updated_at)


def ref(conn: Connection, slug: str) -> StoryRef:
    row = conn.execute(sa.select(*_REF).where(stories.c.slug == slug)).first()
    if row is None:
        raise NotFound("story", slug)
    return _ref(row)


def source(conn: Connection, slug: str) -> bytes:
    value = conn.execute(sa.select(stories.c.source).where(stories.c.slug == slug)).scalar_one_or_none()
    if value is None:
        raise NotFound("story", slug)
    return bytes(value)


@dataclass(frozen=True, slots=True)
class StoryState:
    """What publishing decisions need of a stored story."""

    slug: str
    path: str
    status: str  # draft | published
    content_hash: str
    feed_tags: frozenset[str]
    deleted: bool


def state(conn: Connection, slug: str) -> StoryState | None:
    s = stories
    row = conn.execute(
        sa.select(s.c.path, s.c.status, s.c.content_hash, s.c.feed_tags, s.c.deleted_at).where(s.c.slug == slug)
    ).first()
    if row is None:
        return None
    return StoryState(slug, row.path, row.status, row.content_hash, frozenset(unframe(row.feed_tags)), row.deleted_at is not None)


@dataclass(frozen=True, slots=True)
class StoryRecord:
    """One parsed brief, as the story row stores it."""

    slug: str
    path: str
    title: str
    status: str
    source: bytes
    content_hash: str
    published_at: dt.datetime
    tags: tuple[str, ...]


def _values(record: StoryRecord) -> dict[str, Any]:
    return dict(
        path=record.path, title=record.title, status=record.status, source=record.source,
        content_hash=record.content_hash, published_at=utc(record.published_at),
        deleted_at=None, error=None, feed_tags=frame(record.tags),
    )


def insert(conn: Connection, record: StoryRecord, *, updated_at: dt.datetime, now: dt.datetime) -> None:
    conn.execute(sa.insert(stories).values(slug=record.slug, updated_at=utc(updated_at), created_at=utc(now), **_values(record)))


def update(conn: Connection, record: StoryRecord, *, updated_at: dt.datetime | None) -> None:
    """New content for a story; ``updated_at`` None keeps its date (a move, not an edit)."""
    extra = {} if updated_at is None else {"updated_at": utc(updated_at)}
    conn.execute(sa.update(stories).where(stories.c.slug == record.slug).values(**_values(record), **extra))


def set_error(conn: Connection, slug: str, error: str | None) -> None:
    conn.execute(sa.update(stories).where(stories.c.slug == slug).values(error=error))


def retire(conn: Connection, slug: str, *, now: dt.datetime) -> None:
    conn.execute(sa.update(stories).where(stories.c.slug == slug).values(deleted_at=utc(now)))


# SQLite before 3.32 allows 999 parameters per statement: IN lists go in slices.
IN_CHUNK = 500


def states(conn: Connection, slugs: Iterable[str]) -> dict[str, StoryState]:
    """:func:`state` of many slugs in one query per slice (missing slugs are absent)."""
    s = stories
    wanted = sorted(set(slugs))
    out: dict[str, StoryState] = {}
    for i in range(0, len(wanted), IN_CHUNK):
        query = sa.select(s.c.slug, s.c.path, s.c.status, s.c.content_hash, s.c.feed_tags, s.c.deleted_at).where(
            s.c.slug.in_(wanted[i : i + IN_CHUNK])
        )
        for row in conn.execute(query):
            out[row.slug] = StoryState(
                row.slug, row.path, row.status, row.content_hash, frozenset(unframe(row.feed_tags)), row.deleted_at is not None
            )
    return out


_KEY: sa.BindParameter[Any] = sa.bindparam("k_slug")
_CONTENT = ("path", "title", "status", "source", "content_hash", "published_at", "deleted_at", "error", "feed_tags")
_STATEMENTS: dict[str, Any] = {
    "insert": sa.insert(stories),
    "update": sa.update(stories).where(stories.c.slug == _KEY).values({c: sa.bindparam(c) for c in (*_CONTENT, "updated_at")}),
    "move": sa.update(stories).where(stories.c.slug == _KEY).values({c: sa.bindparam(c) for c in _CONTENT}),
    "error": sa.update(stories).where(stories.c.slug == _KEY).values(error=sa.bindparam("error")),
    "retire": sa.update(stories).where(stories.c.slug == _KEY).values(deleted_at=sa.bindparam("deleted_at")),
}


class Batch:
    """Story writes of one transaction, queued in order and sent as executemany runs.

    Consecutive writes of one kind share one statement (a cold build's
    chunk of new stories is a single INSERT with many parameter sets); the
    order of writes is kept, so a retire followed by a re-use of the slug
    lands as it would one statement at a time.
    """

    def __init__(self) -> None:
        self._ops: list[tuple[str, dict[str, Any]]] = []

    def __len__(self) -> int:
        return len(self._ops)

    def insert(self, record: StoryRecord, *, updated_at: dt.datetime, now: dt.datetime) -> None:
        self._ops.append(("insert", dict(slug=record.slug, updated_at=utc(updated_at), created_at=utc(now), **_values(record))))

    def update(self, record: StoryRecord, *, updated_at: dt.datetime | None) -> None:
        """As :func:`update`."""
        if updated_at is None:
            self._ops.append(("move", dict(k_slug=record.slug, **_values(record))))
        else:
            self._ops.append(("update", dict(k_slug=record.slug, updated_at=utc(updated_at), **_values(record))))

    def set_error(self, slug: str, error: str | None) -> None:
        self._ops.append(("error", {"k_slug": slug, "error": error}))

    def retire(self, slug: str, *, now: dt.datetime) -> None:
        self._ops.append(("retire", {"k_slug": slug, "deleted_at": utc(now)}))

    def flush(self, conn: Connection) -> None:
        ops, self._ops = self._ops, []
        start = 0
        for i in range(1, len(ops) + 1):
            if i == len(ops) or ops[i][0] != ops[start][0]:
                conn.execute(_STATEMENTS[ops[start][0]], [params for _kind, params in ops[start:i]])
                start = i


def _live() -> tuple[Any, ...]:
    return (stories.c.status == "published", stories.c.deleted_at.is_(None))


def newest(conn: Connection, tag: str | None, limit: int | None) -> list[StoryRef]:
    """Published live stories, newest first; of one tag or entity key, or all (None)."""
    query = sa.select(*_REF).where(*_live()).order_by(stories.c.published_at.desc(), stories.c.slug.desc())
    if limit is not None:
        query = query.limit(limit)
    if tag is not None:
        query = query.where(stories.c.feed_tags.contains(f"\n{tag}\n", autoescape=True))
    return [_ref(r) for r in conn.execute(query)]


def live_feed_tags(conn: Connection) -> set[str]:
    """Every tag and entity key of a story still in the folder."""
    out: set[str] = set()
    for (text,) in conn.execute(sa.select(stories.c.feed_tags).where(stories.c.deleted_at.is_(None))):
        out |= unframe(text)
    return out


def for_digest(conn: Connection, since: dt.datetime | None, until: dt.datetime) -> list[StoryRef]:
    """Published live stories first seen in (since, until], newest first; held stories are left out."""
    held = sa.select(issues.c.key).where(issues.c.kind == "story", issues.c.state == IssueState.HELD)
    query = (
        sa.select(*_REF)
        .where(*_live(), stories.c.created_at <= utc(until), stories.c.slug.not_in(held))
        .order_by(stories.c.published_at.desc(), stories.c.slug)
    )
    if since is not None:
        query = query.where(stories.c.created_at > utc(since))
    return [_ref(r) for r in conn.execute(query)]


@dataclass(frozen=True, slots=True)
class StoryListing:
    """A story with its issue's state and its file's last error (status, the desk list)."""

    slug: str
    title: str
    path: str
    status: str
    content_hash: str
    updated_at: dt.datetime
    created_at: dt.datetime  # first seen
    deleted: bool
    error: str | None  # the file's last failure, else the story's
    issue_id: int | None
    issue_state: IssueState | None

    @property
    def state(self) -> str:
        """deleted, the issue's state, or draft/published when there is no issue."""
        if self.deleted:
            return "deleted"
        if self.issue_state is not None:
            return self.issue_state.value
        return "draft" if self.status == "draft" else "published"


def listing(conn: Connection, slug: str | None = None) -> list[StoryListing]:
    s, i, f = stories, issues, files
    query = (
        sa.select(
            s.c.slug, s.c.title, s.c.path, s.c.status, s.c.content_hash, s.c.updated_at, s.c.created_at, s.c.deleted_at, s.c.error,
            i.c.id, i.c.state, f.c.error.label("file_error"),
        )
        .select_from(s.outerjoin(i, sa.and_(i.c.kind == "story", i.c.key == s.c.slug)).outerjoin(f, f.c.path == s.c.path))
        .order_by(s.c.created_at.desc(), s.c.slug)
    )
    if slug is not None:
        query = query.where(s.c.slug == slug)
    return [
        StoryListing(
            r.slug, r.title, r.path, r.status, r.content_hash, r.updated_at, r.created_at, r.deleted_at is not None,
            r.file_error or r.error, r.id, IssueState(r.state) if r.state else None,
        )
        for r in conn.execute(query)
    ]


def fingerprint(conn: Connection, kind: str, key: str) -> str:
    """Changes whenever what a preview of this story (or of the next digest) could show changes."""
    s, i, f = stories, issues, files
    if kind == "story":
        row = conn.execute(
            sa.select(s.c.content_hash, s.c.error, f.c.sha256, f.c.error.label("ferr"))
            .select_from(s.outerjoin(f, f.c.path == s.c.path))
            .where(s.c.slug == key)
        ).first()
        issue = conn.execute(sa.select(i.c.state, i.c.updated_at).where(i.c.kind == "story", i.c.key == key)).first()
    else:
        row = conn.execute(sa.select(sa.func.count(), sa.func.max(s.c.updated_at), sa.func.max(s.c.deleted_at))).first()
        issue = None
    return repr((tuple(row) if row else None, tuple(issue) if issue else None))


def live_titles(conn: Connection, slugs: Iterable[str] | None = None) -> dict[str, str]:
    """slug → title of published live stories (all of them, or of ``slugs``): related links and site lists."""
    query = sa.select(stories.c.slug, stories.c.title).where(*_live())
    if slugs is None:
        return {row.slug: row.title for row in conn.execute(query)}
    wanted = sorted(set(slugs))
    out: dict[str, str] = {}
    for i in range(0, len(wanted), IN_CHUNK):
        out.update((row.slug, row.title) for row in conn.execute(query.where(stories.c.slug.in_(wanted[i : i + IN_CHUNK]))))
    return out


@dataclass(frozen=True, slots=True)
class Listed:
    """What the site's list pages (archive, tags index, counts) show of one story."""

    title: str
    published_at: dt.datetime
    feed_tags: frozenset[str]


def listed(conn: Connection, slugs: Iterable[str] | None = None) -> dict[str, Listed]:
    """slug → Listed of published live stories (all of them, or of ``slugs``), in one query."""
    query = sa.select(stories.c.slug, stories.c.title, stories.c.published_at, stories.c.feed_tags).where(*_live())
    if slugs is not None:
        wanted = sorted(set(slugs))
        if not wanted:
            return {}
        query = query.where(stories.c.slug.in_(wanted))
    return {r.slug: Listed(r.title, r.published_at, frozenset(unframe(r.feed_tags))) for r in conn.execute(query)}


def live_tag_counts(conn: Connection) -> dict[str, int]:
    """Tag or entity key → number of published live stories carrying it (one query for the tags index)."""
    counts: dict[str, int] = {}
    for (text,) in conn.execute(sa.select(stories.c.feed_tags).where(*_live())):
        for key in unframe(text):
            counts[key] = counts.get(key, 0) + 1
    return counts
