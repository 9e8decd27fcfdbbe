"""A brief's slug, title and status from its head alone, for a build that must know them first.

A story page lists its related stories by title, so a build that renders
pages in parallel needs every story's title before any page. Parsing every
brief twice would cost a build most of a second parse; the head (front
matter and the line-by-line outline) is a fifth of it and decides all three
values. :func:`identify` runs the same steps as :func:`publisher.briefs.parse.lint`
up to there, but for the outline: instead of walking every line in Python
it finds the two lines that matter with the outline's own patterns: the
first ``# `` title in one C scan of the text, the last ``Canonical:`` by
walking back from the end (where it usually is). Wherever ``parse_brief`` succeeds the values are equal
(``tests/briefs/test_identity.py``); a brief whose body then fails to parse
has an identity but no story, which the build corrects after recording.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..core.errors import BriefError
from ..core.urls import is_http_url
from .frontmatter import decode, read_front_matter, split_front_matter
from .inline import FORBIDDEN_CONTROLS, Context, has_forbidden_controls, plain
from .parse import MAX_BYTES, _slug_from
from .sections import _CANONICAL

# parse._H1 over the whole text rather than one line: ^ and $ at line
# ends, and whitespace that cannot cross one ([^\S\n]).
_H1_LINE = re.compile(r"^#(?!#)[^\S\n]+(.*?)[^\S\n]*#*[^\S\n]*$", re.MULTILINE)


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
        body = decode(data, path)
        if has_forbidden_controls(data, body):
            body = FORBIDDEN_CONTROLS.sub("", body)
        lines = body.split("\n")
        fm_data, key_lines, body_start = split_front_matter(lines, ctx)
        fm = read_front_matter(fm_data, key_lines, ctx)
    except BriefError:
        return None
    canonical = fm.canonical
    if canonical is None:
        # The outline keeps the last Canonical line: the first one from the end (usually the last line).
        for line in reversed(lines[body_start:]):
            found = _CANONICAL.match(line) if line[:1] in ("C", "c") else None
            if found is not None:
                canonical = found.group(1) if is_http_url(found.group(1)) else None
                break
    if body_start:
        body = "\n".join(lines[body_start:])
    h1 = _H1_LINE.search(body) if not fm.title else None
    raw_title = fm.title or (plain(h1.group(1)) if h1 else None)  # the outline's title is plain already
    title = plain(raw_title) if raw_title is not None else ""
    slug = _slug_from(fm.slug, canonical, path)
    if not title or not slug:
        return None
    return Identity(slug, title, fm.status)
