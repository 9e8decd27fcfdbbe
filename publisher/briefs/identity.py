"""A brief's slug, title and status from its head alone, for a build that must know them first.

A story page lists its related stories by title, so a build that renders
pages in parallel needs every story's title before any page. Parsing every
brief twice would cost a build most of a second parse; the head (front
matter and the line-by-line outline) is a fifth of it and decides all three
values. :func:`identify` runs the same steps as :func:`publisher.briefs.parse.lint`
up to there, so wherever ``parse_brief`` succeeds the values are equal
(``tests/briefs/test_identity.py``); a brief whose body then fails to parse
has an identity but no story, which the build corrects after recording.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import BriefError
from ..core.urls import is_http_url
from .frontmatter import decode, read_front_matter, split_front_matter
from .inline import FORBIDDEN_CONTROLS, Context, plain
from .parse import MAX_BYTES, _outline, _slug_from


@dataclass(frozen=True, slots=True)
class Identity:
    slug: str
    title: str
    status: str  # "draft" or "published", as Brief.status


def identify(data: bytes, path: str) -> Identity | None:
    """What ``parse_brief(data, path)`` would name ``slug``, ``title`` and ``status``; None where its head
    already fails (the full parse reports why, with the line)."""
    if len(data) > MAX_BYTES:
        return None
    ctx = Context(path, None)
    try:
        text = decode(data, path)
        lines = FORBIDDEN_CONTROLS.sub("", text).split("\n")
        fm_data, key_lines, body_start = split_front_matter(lines, ctx)
        fm = read_front_matter(fm_data, key_lines, ctx)
    except BriefError:
        return None
    outline = _outline(lines, body_start, ctx)
    canonical = fm.canonical
    if canonical is None and outline.canonical_raw is not None and is_http_url(outline.canonical_raw[0]):
        canonical = outline.canonical_raw[0]
    raw_title = fm.title or outline.title
    title = plain(raw_title) if raw_title is not None else ""
    slug = _slug_from(fm.slug, canonical, path)
    if not title or not slug:
        return None
    return Identity(slug, title, fm.status)
