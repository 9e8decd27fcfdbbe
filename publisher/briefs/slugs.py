"""Slugs: the path-safe keys of stories, tags and entities."""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata

SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MAX_SLUG = 120


def slugify(text: str) -> str:
    """A path-safe ``[a-z0-9-]+`` form of ``text`` ('' when nothing is left)."""
    norm = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", norm.lower()).strip("-")[:MAX_SLUG].strip("-")


def tag_slug(name: str) -> str:
    """The path-safe key of a tag or entity (its feed lives at ``tags/<key>/``).

    ASCII-able names slugify ("Alibaba Qwen" → ``alibaba-qwen``); names in
    other scripts ("東京", "الجزيرة") keep a stable key from a hash of their
    case-folded text, so they still get a feed. '' only when the name has no
    letter or digit at all.
    """
    # A build asks for the key of each of a brief's tags and entities several
    # times (its feeds, its page's chips, its entry, its list item), and briefs
    # name the same few hundred entities over and over: about 1 µs each
    # computed, 0.1 µs remembered. Only a short name is remembered, so the
    # memo never keeps much text.
    return _short_tag_slug(name) if len(name) <= _SHORT_NAME else _tag_slug(name)


def _tag_slug(name: str) -> str:
    slug = slugify(name)
    if slug:
        return slug
    folded = unicodedata.normalize("NFKC", name).casefold().strip()
    if not any(ch.isalnum() for ch in folded):
        return ""
    return "u-" + hashlib.sha256(folded.encode("utf-8")).hexdigest()[:12]


_SHORT_NAME = 80
_short_tag_slug = functools.lru_cache(maxsize=4096)(_tag_slug)
