"""Stories → Atom 1.0, RSS 2.0 and JSON Feed 1.1 bytes. Pure: no clock, no I/O
beyond reading the entry template once per process.

Feed readers key their "unread" state on the entry id and ``updated``, so
both come from the story itself, never from the build:

* Entry id: ``tag:<host of site.base_url>,<YYYY-MM-DD>:<slug>`` (RFC 4151),
  the date being the story's publication date in the site time zone. It does
  not depend on the file name or the text, so renaming or editing a brief
  never makes it reappear as new. (The canonical URL was not chosen because
  editors do fix canonical URLs after publication.)
* Entry ``updated`` is :attr:`FeedStory.updated`, which the caller changes
  only when the story's content changes; feed ``updated`` is the newest
  entry's, never the build time.

Every feed file is *spliced*: a head and a tail that depend on the feed and
its ``updated`` only, with the :class:`EntryParts` of its stories (one
entry's Atom, RSS and JSON bytes) joined between them. The parts of a story
are rendered once (:func:`entries_parts`) and can be kept by the caller, even
across processes (``publish.entrycache``): :func:`assemble` then makes a
feed without its briefs. There is no second way to write a feed, so a feed
spliced from kept parts is the full render, byte for byte.

Atom and RSS come from feedgen (its pitfalls are handled in
:mod:`publisher.render.feedxml`); JSON Feed 1.1 is written with json, each
item indented as ``json.dumps(indent=2)`` would place it in the whole feed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.config import Config
from ..core.memo import IdentityMemo
from .feed_entries import GENERATOR, Entry, FeedStory, aware, line, make_entry
from .feedxml import EMPTY_FEED_UPDATED, FeedInfo, entries_xml, heads

log = logging.getLogger(__name__)

JSONFEED_VERSION = "https://jsonfeed.org/version/1.1"
FORMATS = ("atom", "rss", "json")


# ------------------------------------------------------------------ one entry


@dataclass(frozen=True)
class EntryParts:
    """One story's entry in every format, as the bytes a feed joins; and what a feed needs of it besides."""

    slug: str
    updated: dt.datetime  # the entry's updated (site time zone): the feed's is the newest of these
    keys: tuple[tuple[str, str], ...]  # (tag slug, display name): which tag feeds carry it, their titles
    atom: bytes
    rss: bytes
    json: bytes  # the item at its place in the feed: indented, first line without the indent


_JSON_INDENT = "    "  # an item of the top-level "items" list
_PARTS_MEMO = IdentityMemo[EntryParts](2048)


def _json_item(e: Entry, cfg: Config) -> bytes:
    author = {"name": line(cfg.site.author) or GENERATOR}
    item = {
        "id": e.id,
        "url": e.link,
        "title": e.title,
        "summary": e.summary,
        "content_html": e.html,
        "date_published": e.published.isoformat(),
        "date_modified": e.updated.isoformat(),
        "authors": [author],
        "tags": list(e.categories),
    }
    # JSON escapes newlines inside strings, so every line break is the indent's.
    text = json.dumps(item, ensure_ascii=False, indent=2, sort_keys=True).replace("\n", "\n" + _JSON_INDENT)
    return text.encode("utf-8")


def entries_parts(entries: Sequence[Entry], cfg: Config) -> list[EntryParts]:
    """The parts of each entry (distinct stories), rendered once per story version (memoised on its
    Brief's identity); those not memoised are rendered together."""
    out: list[EntryParts | None] = [_PARTS_MEMO.get((cfg, e.brief), (e.published, e.updated)) for e in entries]
    missing = [i for i, hit in enumerate(out) if hit is None]
    for i, (atom, rss) in zip(missing, entries_xml([entries[i] for i in missing], cfg)):
        e = entries[i]
        parts = EntryParts(e.slug, e.updated, e.keys, atom, rss, _json_item(e, cfg))
        _PARTS_MEMO.put((cfg, e.brief), (e.published, e.updated), parts)
        out[i] = parts
    return [p for p in out if p is not None]


# ------------------------------------------------------------------ one feed

_JSON_ITEMS = '\n  "items": []'
_JSON_HEAD_MEMO = IdentityMemo[tuple[bytes, bytes]](512)


def _json_head(info: FeedInfo, cfg: Config) -> tuple[bytes, bytes]:
    """The JSON feed before and after its items (it has no ``updated`` of its own)."""
    hit = _JSON_HEAD_MEMO.get((cfg,), (info,))
    if hit is not None:
        return hit
    site = cfg.site
    author = {"name": line(site.author) or GENERATOR}
    feed: dict[str, Any] = {
        "version": JSONFEED_VERSION,
        "title": info.title,
        "description": info.subtitle or info.title,
        "home_page_url": site.url(""),
        "feed_url": info.url(cfg, "json"),
        "language": site.language,
        "authors": [author],
        "items": [],
    }
    if site.icon:
        feed["icon"] = site.icon
        feed["favicon"] = site.icon
    if cfg.feeds.hub:
        feed["hubs"] = [{"type": "WebSub", "url": cfg.feeds.hub}]
    text = json.dumps(feed, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    # Strings are escaped, so an unescaped '"items": []' at the top level's
    # indent can only be the key itself.
    before, found, after = text.partition(_JSON_ITEMS)
    assert found, "json feed without items"
    value = ((before + '\n  "items": [').encode(), ("]" + after).encode())
    _JSON_HEAD_MEMO.put((cfg,), (info,), value)
    return value


def _join_json(head: tuple[bytes, bytes], parts: Sequence[EntryParts]) -> bytes:
    if not parts:
        return head[0] + head[1]
    indent = b"\n" + _JSON_INDENT.encode()
    return head[0] + indent + (b"," + indent).join(p.json for p in parts) + b"\n  " + head[1]


def atom_document(info: FeedInfo, parts: Sequence[EntryParts], cfg: Config) -> bytes:
    updated = max((p.updated for p in parts), default=EMPTY_FEED_UPDATED)
    atom_head, atom_tail, _rss_head, _rss_tail = heads(info, cfg, updated)
    return atom_head + b"".join(p.atom for p in parts) + atom_tail


def assemble(info: FeedInfo, parts: Sequence[EntryParts], cfg: Config) -> dict[str, bytes]:
    """A feed's three files (``<path>feed.<fmt>``) from its entries' parts, newest first: joins, no render."""
    updated = max((p.updated for p in parts), default=EMPTY_FEED_UPDATED)
    atom_head, atom_tail, rss_head, rss_tail = heads(info, cfg, updated)
    return {
        f"{info.path}feed.atom": atom_head + b"".join(p.atom for p in parts) + atom_tail,
        f"{info.path}feed.rss": rss_head + b"".join(p.rss for p in parts) + rss_tail,
        f"{info.path}feed.json": _join_json(_json_head(info, cfg), parts),
    }


def main_info(cfg: Config) -> FeedInfo:
    return FeedInfo("", line(cfg.site.title), line(cfg.site.subtitle))


def tag_info(cfg: Config, slug: str, name: str) -> FeedInfo:
    title = line(cfg.site.title)
    return FeedInfo(f"tags/{slug}/", f"{title}: {name}", f"Stories tagged {name}")


def tag_name(parts: Sequence[EntryParts], slug: str) -> str:
    """A tag's display name as the newest story carrying it spells it."""
    return next((name for p in parts for key, name in p.keys if key == slug), slug)


# ------------------------------------------------------------------ all feeds


def _newest_first(stories: Iterable[FeedStory], cfg: Config) -> list[Entry]:
    published = [s for s in stories if not s.brief.is_draft]
    published.sort(key=lambda s: (aware(s.published, "published", s.brief.slug), s.brief.slug), reverse=True)
    entries: list[Entry] = []
    seen: set[str] = set()
    for story in published:
        if story.brief.slug in seen:
            log.warning("feeds: duplicate slug %s (%s) left out", story.brief.slug, story.brief.path)
            continue
        seen.add(story.brief.slug)
        entries.append(make_entry(story, cfg))
    return entries


MAIN_FEED = ""  # the key of the main feed in ``render_feeds(only=...)``


def archive_url(cfg: Config, number: int) -> str:
    return cfg.site.url(f"archive/{number}.atom")


def _archives(main: FeedInfo, entries: Sequence[Entry], cfg: Config, out: dict[str, bytes]) -> tuple[FeedInfo, int]:
    """RFC 5005 archive pages (Atom) ``archive/<n>.atom``.

    Stories older than the main feed's newest ``feeds.size`` are cut into
    pages oldest first, and only *full* pages are published, so a page never
    changes once written: readers walk ``prev-archive`` back until a page
    they already have, and a page that later gained a story would hide it
    from them. Older stories not yet on a full page stay in the main feed,
    which therefore holds ``feeds.size`` stories plus fewer than
    ``archive_page_size`` waiting for a page; every story is in exactly one
    document. Returns the main feed info (with its ``prev-archive`` link)
    and how many entries it must hold."""
    page_size = cfg.feeds.archive_page_size
    oldest_first = list(reversed(entries[cfg.feeds.size :]))
    full = len(oldest_first) // page_size
    current = main.url(cfg, "atom")
    for number in range(1, full + 1):
        page = oldest_first[(number - 1) * page_size : number * page_size]
        links = [("current", current)]
        if number > 1:
            links.append(("prev-archive", archive_url(cfg, number - 1)))
        if number < full:
            links.append(("next-archive", archive_url(cfg, number + 1)))
        info = FeedInfo(
            "archive/", f"{main.title} (archive {number})", main.subtitle, name=str(number), links=tuple(links), archive=True
        )
        # Within a page, newest first like every other feed.
        out[f"archive/{number}.atom"] = atom_document(info, entries_parts(page[::-1], cfg), cfg)
    keep = len(entries) - full * page_size
    if not full:
        return main, keep
    return dataclasses.replace(main, links=(("prev-archive", archive_url(cfg, full)),)), keep


def render_feeds(
    stories: Sequence[FeedStory], cfg: Config, *, only: Collection[str] | None = None
) -> dict[str, bytes]:
    """Relative output path → bytes for the main feeds and, if enabled, one
    feed per tag/entity under ``tags/<tag-slug>/``. Drafts are left out.

    With ``feeds.archive``, all stories also go to RFC 5005 archive pages
    ``archive/<n>.atom`` (see :func:`_archives`), so the caller must then
    pass *all* stories for the main feed, not just the newest.

    ``only`` limits the output to some feeds: ``MAIN_FEED`` ("") for the main
    one, a tag slug for ``tags/<slug>/`` (an incremental build re-renders
    just the feeds a change touched)."""
    size = cfg.feeds.size
    out: dict[str, bytes] = {}
    entries = _newest_first(stories, cfg)
    if only is None or MAIN_FEED in only:
        main, keep = main_info(cfg), size
        if cfg.feeds.archive:
            main, keep = _archives(main, entries, cfg, out)
        out.update(assemble(main, entries_parts(entries[:keep], cfg), cfg))
    if cfg.feeds.tag_feeds:
        # One pass over the stories, newest first: linear in stories × tags.
        by_tag: dict[str, list[Entry]] = {}
        for e in entries:
            for slug, _name in e.keys:
                bucket = by_tag.setdefault(slug, [])
                if len(bucket) < size:
                    bucket.append(e)
        for slug in sorted(by_tag):
            if only is None or slug in only:
                out.update(feed_files(slug, entries_parts(by_tag[slug], cfg), cfg))
    log.info("feeds: %d stories, %d files", len(entries), len(out))
    return out


def feed_files(key: str, parts: Sequence[EntryParts], cfg: Config) -> dict[str, bytes]:
    """The main feed (``MAIN_FEED``) or one tag's, from its members' parts newest first (no archive pages)."""
    info = main_info(cfg) if key == MAIN_FEED else tag_info(cfg, key, tag_name(parts, key))
    return assemble(info, parts, cfg)


__all__ = ["EntryParts", "FeedStory", "MAIN_FEED", "assemble", "entries_parts", "feed_files", "render_feeds"]
