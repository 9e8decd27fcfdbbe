"""A brief's slug, title and status from its head alone, for a build that must know them first.

A story page lists its related stories by title, so a build that renders
pages in parallel needs every story's title before any page. Parsing every
brief twice would cost a build most of a second parse; the head (front
matter and the line-by-line outline) is a fifth of it and decides all three
values. :func:`identify` runs the same steps as :func:`publisher.briefs.parse.lint`
up to there (:func:`~publisher.briefs.parse.read_head`), but for the outline:
instead of walking every line it finds the two that matter with the
outline's own tests, the first ``# `` title from the top and the last
``Canonical:`` from the end (where each usually is). Wherever ``parse_brief`` succeeds the values are equal
(``tests/briefs/test_identity.py``); a brief whose body then fails to parse
has an identity but no story, which the build corrects after recording.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import BriefError
from ..core.urls import is_http_url
from .inline import Context, plain
from .parse import _slug_from, read_head, split_plain
from .sections import _CANONICAL, heading


@dataclass(frozen=True, slots=True)
class Identity:
    slug: str
    title: str
    status: str  # "draft" or "published", as Brief.status


def identify(data: bytes, path: str) -> Identity | None:
    """What ``parse_brief(data, path)`` would name ``slug``, ``title`` and ``status``; None where its head
    already fails (the full parse reports why, with the line)."""
    try:
        lines, fm, body_start = read_head(data, path, Context(path, None))
    except BriefError:
        return None
    body = lines[body_start:]
    canonical = fm.canonical
    split = None  # as lint: a plain canonical URL's (origin, path), by one regex instead of urlsplit calls
    if canonical is None:
        # The outline keeps the last Canonical line: the first one from the end.
        for line in reversed(body):
            found = _CANONICAL.match(line) if line[:1] in ("C", "c") else None
            if found is not None:
                raw = found.group(1)
                split = split_plain(raw)
                canonical = raw if split is not None or is_http_url(raw) else None
                break
    raw_title = fm.title
    if not raw_title:
        # The outline's title: its first level-1 heading, made plain.
        head = next((h for line in body if line[:1] == "#" and (h := heading(line)) is not None and h[0] == 1), None)
        raw_title = plain(head[1]) if head is not None else None
    title = plain(raw_title) if raw_title is not None else ""
    slug = _slug_from(fm.slug, canonical, path, split[1] if split is not None else None)
    if not title or not slug:
        return None
    return Identity(slug, title, fm.status)
