"""Bytes → :class:`Brief`: the model, the parser, inline Markdown, lint, serialisation.

Pure (but for :func:`load_brief` and :func:`find_briefs`, which read the
disk); imports nothing of ours but :mod:`publisher.core`.
"""

from .files import find_briefs, is_brief_name, load_brief
from .model import Brief, Finding, Lens, Link, Meta, Rich, Section, Take
from .parse import MAX_BYTES, SUFFIXES, lint, parse_brief
from .slugs import slugify, tag_slug

__all__ = [
    "MAX_BYTES", "SUFFIXES", "Brief", "Finding", "Lens", "Link", "Meta", "Rich", "Section", "Take",
    "find_briefs", "is_brief_name", "lint", "load_brief", "parse_brief", "slugify", "tag_slug",
]
