"""One brief file read, parsed and (in a build worker) rendered: the unit the pipeline isolates.

Everything a file can do wrong ends here as a :class:`Parsed` with an error
naming the file (and line, when the parser knows it); nothing raised while
handling one file reaches the files beside it. ``Parsed.retry`` tells a
content error (recorded, read again only when the file changes) from a
failure of the moment (a render, a full disk: read again on a later scan).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..briefs.model import Brief
from ..briefs.parse import parse_brief
from ..briefs.slugs import tag_slug
from ..core.config import Config
from ..core.errors import BriefError, BriefUnreadable, PublisherError
from ..render import site
from ..render.email import RenderedIssue, story_web_text, web_text
from . import watch
from .heads import read_brief
from .outputs import write_all_atomic
from .workers import chunk_done, config

log = logging.getLogger(__name__)


def feed_tags(brief: Brief) -> tuple[str, ...]:
    """Tag-feed keys of a story: its tags and entities, as path-safe slugs."""
    seen: dict[str, None] = {}
    for name in (*brief.tags, *brief.entities):
        key = tag_slug(name)
        if key:
            seen.setdefault(key, None)
    return tuple(seen)


@dataclass(frozen=True)
class Parsed:
    """One file read and parsed: all the pipeline needs, small enough to pass between processes."""

    path: str
    stat: watch.Stat
    sha256: str
    error: str | None
    slug: str | None = None
    title: str = ""
    status: str = "published"
    published_at: dt.datetime | None = None
    updated: dt.datetime | None = None  # front matter 'updated'
    tags: tuple[str, ...] = ()
    source: bytes = b""
    related: tuple[str, ...] = ()  # its story page is rewritten once related titles are known
    retry: bool = False  # the error is of the moment (render, I/O), not of the content
    written: tuple[str, ...] = ()  # files under public/ a build worker wrote for it


def failure_message(full: Path, exc: BaseException) -> str:
    """``file: cannot publish: reason [errno]``: one line for the log, the store and `status`."""
    if isinstance(exc, OSError):
        code = f" [{errno_name(exc.errno)}]" if exc.errno else ""
        return f"{full}: cannot publish: {exc.strerror or exc}{code}"
    if isinstance(exc, PublisherError):
        return f"{full}: cannot publish: {exc}"
    # A database error's text carries its SQL and parameters: its driver's first line says it.
    first = (str(getattr(exc, "orig", None) or exc).splitlines() or [""])[0]
    return f"{full}: cannot publish: {type(exc).__name__}: {first}"


def errno_name(code: int | None) -> str:
    import errno

    return errno.errorcode.get(code or 0, str(code))


def read_and_parse(cfg: Config, path: str, stat: watch.Stat) -> tuple[Parsed, Brief | None]:
    got = _read_brief_file(cfg, path, stat)
    if isinstance(got, Parsed):
        return got, None
    data, brief = got
    return parsed_story(cfg, path, stat, data, brief), brief


def _read_brief_file(cfg: Config, path: str, stat: watch.Stat) -> Parsed | tuple[bytes, Brief]:
    """The bytes and Brief of file ``path``, or the :class:`Parsed` that says why there are none."""
    full = os.path.join(cfg.paths.briefs, path)
    try:
        data = read_brief(cfg, path)
    except BriefUnreadable as exc:
        return Parsed(path, stat, "", str(exc), retry=True)  # e.g. permissions: a chmod does not change the mtime
    except BriefError as exc:
        return Parsed(path, stat, "", str(exc))
    try:
        brief = parse_brief(data, full, base_url=cfg.site.base_url)
    except BriefError as exc:
        return Parsed(path, stat, hashlib.sha256(data).hexdigest(), str(exc))
    return data, brief


def parsed_story(cfg: Config, path: str, stat: watch.Stat, data: bytes, brief: Brief, written: tuple[str, ...] = ()) -> Parsed:
    """The :class:`Parsed` of a brief that parsed (``data``, its bytes, become the story's stored source)."""
    return Parsed(
        path, stat, brief.content_hash, None, brief.slug, brief.title, brief.status, brief.published_at(cfg.site.tz),
        brief.updated, feed_tags(brief), data, brief.related, written=written,
    )


def write_web_issue(
    brief: Brief, cfg: Config, issue: RenderedIssue | None = None, related_titles: dict[str, str] | None = None
) -> list[str]:
    """public/issues/<slug>.html, the story's web page (what the email's "view in browser" opens,
    without the email's footer), and .txt, the email's plain text.

    Both files are staged before either replaces its old version, so a full
    disk leaves the old pair, never a new page beside an old text.
    """
    page = site.story_page(brief, cfg, related_titles=related_titles)
    # A build has no issue: it needs the text alone, not the email HTML that sets how many takes it lists.
    text = web_text(issue, cfg) if issue is not None else story_web_text(brief, cfg, related_titles=related_titles)
    base = cfg.paths.public / "issues"
    items = [(base / f"{brief.slug}.html", page.encode("utf-8")), (base / f"{brief.slug}.txt", text.encode("utf-8"))]
    return [f"issues/{p.name}" for p in write_all_atomic(items)]


# slug → title of every story a build expects to publish (see heads.identify_chunk),
# set by the parent before it forks the workers that render pages, which
# inherit it rather than receive a copy of it.
_titles_ahead: dict[str, str] = {}


def set_titles_ahead(titles: dict[str, str]) -> None:
    global _titles_ahead
    _titles_ahead = titles


def related_titles(related: Sequence[str], titles: dict[str, str]) -> dict[str, str]:
    """The titles a page naming ``related`` shows, from ``titles``."""
    return {slug: titles[slug] for slug in related if slug in titles}


def build_one(cfg: Config, path: str, stat: watch.Stat) -> Parsed:
    """Read, parse and write the web issue of one file; whatever fails is this file's error."""
    got = _read_brief_file(cfg, path, stat)
    if isinstance(got, Parsed):
        return got
    data, brief = got
    if brief.is_draft:
        return parsed_story(cfg, path, stat, data, brief)
    try:
        written = write_web_issue(brief, cfg, None, related_titles(brief.related, _titles_ahead))
    except Exception as exc:  # whatever one brief does, the others publish (the parent logs it)
        return Parsed(path, stat, brief.content_hash, failure_message(cfg.paths.briefs / path, exc), retry=True)
    # One Parsed, made with the files written (not made, then copied by dataclasses.replace).
    return parsed_story(cfg, path, stat, data, brief, tuple(written))


def build_chunk(paths: Sequence[tuple[str, watch.Stat]]) -> list[Parsed]:
    cfg = config()
    out = [build_one(cfg, path, stat) for path, stat in paths]
    chunk_done()
    return out


@dataclass(frozen=True)
class PageJob:
    """A web issue to render again once the build knows the titles of the stories it names."""

    path: str
    sha256: str  # what the build recorded: a file changed since is left to the parent
    titles: dict[str, str]


def page_chunk(jobs: Sequence[PageJob]) -> list[tuple[PageJob, list[str] | None]]:
    """Each job's web issue (page and text) rewritten with its related titles; None where the parent must do it (changed file, failure)."""
    cfg = config()
    out: list[tuple[PageJob, list[str] | None]] = []
    for job in jobs:
        parsed, brief = read_and_parse(cfg, job.path, watch.Stat(0, 0))
        written: list[str] | None = None
        if brief is not None and parsed.sha256 == job.sha256:
            try:
                written = write_web_issue(brief, cfg, None, job.titles)
            except Exception:  # noqa: BLE001 - the parent renders it again and raises with context
                log.debug("%s: story page left to the parent", job.path, exc_info=True)
        out.append((job, written))
    chunk_done()
    return out


