"""The file index: one row per file seen in the briefs folder (stat, hash, slug, last error)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .engine import dialect_insert
from .schema import files
from .subscribers import utc


@dataclass(frozen=True, slots=True)
class FileRow:
    path: str  # relative to the briefs folder
    mtime_ns: int
    size: int
    sha256: str
    slug: str | None


def all_files(conn: Connection) -> list[FileRow]:
    f = files
    rows = conn.execute(sa.select(f.c.path, f.c.mtime_ns, f.c.size, f.c.sha256, f.c.slug)).all()
    return [FileRow(r.path, r.mtime_ns, r.size, r.sha256, r.slug) for r in rows]


# The stat of a file whose only record is a failure: matches no real file, so
# the next scan (in this process or after a restart) reads it again.
UNSEEN = -1


def save(conn: Connection, row: FileRow, *, error: str | None, now: dt.datetime) -> None:
    """Record what a read of the file found (over a failure-only row, if one was left)."""
    values = dict(mtime_ns=row.mtime_ns, size=row.size, sha256=row.sha256, slug=row.slug, error=error, seen_at=utc(now))
    updated = conn.execute(sa.update(files).where(files.c.path == row.path).values(**values)).rowcount
    if not updated:
        conn.execute(sa.insert(files).values(path=row.path, **values))


def save_many(conn: Connection, rows: Sequence[tuple[FileRow, str | None]], *, now: dt.datetime) -> None:
    """:func:`save` of many (row, error) pairs: one INSERT … ON CONFLICT DO UPDATE with many parameter sets."""
    if not rows:
        return
    seen = utc(now)
    params = [
        dict(path=r.path, mtime_ns=r.mtime_ns, size=r.size, sha256=r.sha256, slug=r.slug, error=error, seen_at=seen) for r, error in rows
    ]
    stmt = dialect_insert(conn, files)
    if stmt is None:  # pragma: no cover - other backends keep the portable two-step form
        for r, error in rows:
            save(conn, r, error=error, now=now)
        return
    keep = ("mtime_ns", "size", "sha256", "slug", "error", "seen_at")
    conn.execute(stmt.on_conflict_do_update(index_elements=["path"], set_={c: stmt.excluded[c] for c in keep}), params)


def record_failure(conn: Connection, path: str, error: str, *, now: dt.datetime) -> None:
    """A file that could not be published this time: its error shown, its last good stat kept (or none), so it is retried."""
    updated = conn.execute(sa.update(files).where(files.c.path == path).values(error=error, seen_at=utc(now))).rowcount
    if not updated:
        conn.execute(sa.insert(files).values(path=path, mtime_ns=UNSEEN, size=UNSEEN, sha256="", slug=None, error=error, seen_at=utc(now)))


def touch(conn: Connection, path: str, *, mtime_ns: int, size: int) -> None:
    """A file touched but not changed: only its stat moves."""
    conn.execute(sa.update(files).where(files.c.path == path).values(mtime_ns=mtime_ns, size=size))


def forget(conn: Connection, path: str) -> None:
    conn.execute(sa.delete(files).where(files.c.path == path))


@dataclass(frozen=True, slots=True)
class BrokenFile:
    path: str
    error: str  # "file:line: message"
    seen_at: dt.datetime


def broken(conn: Connection) -> list[BrokenFile]:
    """Files whose last read failed and that publish no story (new briefs that never parsed, a slug clash)."""
    query = sa.select(files.c.path, files.c.error, files.c.seen_at).where(files.c.error.is_not(None), files.c.slug.is_(None)).order_by(files.c.path)
    return [BrokenFile(r.path, r.error, r.seen_at) for r in conn.execute(query)]


def recent_errors(conn: Connection, *, limit: int = 20) -> list[tuple[str, str]]:
    """(path, "file:line: message") of files whose last read failed, newest first."""
    query = sa.select(files.c.path, files.c.error).where(files.c.error.is_not(None)).order_by(files.c.seen_at.desc()).limit(limit)
    return [(r.path, r.error) for r in conn.execute(query)]
