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

Atom and RSS are produced with feedgen. Its pitfalls are handled in this
file only, each at a comment starting "feedgen pitfall:": ``updated`` and
``lastBuildDate`` default to now() (always set from the entries); entry links
lose ``rel``/``type``; ``type="CDATA"`` is invalid Atom (we use ``html``);
the RSS channel ``<link>`` is the last link added; RSS drops ``rel=hub``;
RSS dates flip the process locale. :func:`_fix_feedgen_atom` and
:func:`_fix_feedgen_rss` post-process the XML; they also write the hex
character references an RSS title needs. JSON Feed 1.1 is written with json.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import re
import threading
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from feedgen.feed import FeedGenerator
from lxml import etree  # type: ignore[import-untyped]
from markupsafe import escape

from .. import __version__
from ..core.config import Config
from ..core.errors import RenderError
from ..core.memo import IdentityMemo
from .feed_entries import GENERATOR, Entry, FeedStory, aware, line, make_entry

log = logging.getLogger(__name__)

JSONFEED_VERSION = "https://jsonfeed.org/version/1.1"
ATOM_NS = "http://www.w3.org/2005/Atom"
_A = "{%s}" % ATOM_NS
FORMATS = ("atom", "rss", "json")
MEDIA_TYPES = {
    "atom": "application/atom+xml",
    "rss": "application/rss+xml",
    "json": "application/feed+json",
}
# A feed with no entry still needs an ``updated``; the epoch keeps it stable.
EMPTY_FEED_UPDATED = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


# ------------------------------------------------------------------ one feed


@dataclass(frozen=True)
class _FeedInfo:
    path: str  # output folder prefix: "" or "tags/<slug>/"
    title: str
    subtitle: str
    name: str = "feed"  # file name without the format suffix
    links: tuple[tuple[str, str], ...] = ()  # extra Atom (rel, href): RFC 5005 paging
    archive: bool = False  # an RFC 5005 archive document (fh:archive)

    def url(self, cfg: Config, fmt: str) -> str:
        return cfg.site.url(f"{self.path}{self.name}.{fmt}")


def _feed_updated(entries: Sequence[Entry]) -> dt.datetime:
    return max((e.updated for e in entries), default=EMPTY_FEED_UPDATED)


def _rss_time(value: dt.datetime) -> dt.datetime:
    """RFC 822 zones as the W3C validator reads them are whole or half hours
    (it rejects +0545): such a zone's times go out in UTC in RSS."""
    offset = value.utcoffset() or dt.timedelta(0)
    return value if offset % dt.timedelta(minutes=30) == dt.timedelta(0) else value.astimezone(dt.timezone.utc)


def _feedgen(
    info: _FeedInfo, entries: Sequence[Entry], cfg: Config, fmt: str, updated: dt.datetime | None = None
) -> FeedGenerator:
    site = cfg.site
    fg = FeedGenerator()
    fg.load_extension("dc", atom=False, rss=True)
    fg.id(info.url(cfg, "atom"))
    fg.title(info.title)
    fg.subtitle(info.subtitle or info.title)  # also the RSS channel description
    fg.link(href=site.url(""), rel="alternate", type="text/html")
    fg.link(href=info.url(cfg, fmt), rel="self", type=MEDIA_TYPES[fmt])
    if cfg.feeds.hub:
        fg.link(href=cfg.feeds.hub, rel="hub")
    if fmt == "atom":
        for rel, href in info.links:
            fg.link(href=href, rel=rel, type=MEDIA_TYPES["atom"])
    fg.language(site.language)
    author = {"name": line(site.author) or GENERATOR}
    if site.author_email:
        author["email"] = site.author_email
    fg.author(author)
    fg.generator(GENERATOR, version=__version__)
    if site.icon:
        fg.icon(site.icon)
    if site.logo:
        fg.logo(site.logo)
    # feedgen pitfall: updated/lastBuildDate default to now(); always set.
    feed_updated = updated or _feed_updated(entries)
    fg.updated(_rss_time(feed_updated) if fmt == "rss" else feed_updated)
    for e in entries:
        fe = fg.add_entry(order="append")
        fe.id(e.id)  # also the RSS guid, isPermaLink="false" (a tag: URI is no URL)
        fe.title(e.title)
        fe.link(href=e.link, rel="alternate", type="text/html")
        fe.published(_rss_time(e.published) if fmt == "rss" else e.published)
        fe.updated(_rss_time(e.updated) if fmt == "rss" else e.updated)  # feedgen pitfall: entries default to now() too
        fe.author(author)
        if "email" not in author:
            fe.dc.dc_creator(author["name"])  # RSS <author> must be an email
        if e.categories:
            fe.category([{"term": term} for term in e.categories])  # one call: feedgen validates per call
        if e.summary:
            # RSS description is HTML by convention: escape the plain text
            # once here; Atom gets the plain text in a type="text" summary.
            fe.summary(e.summary if fmt == "atom" else str(escape(e.summary)))
        # feedgen pitfall: type="CDATA" yields an invalid Atom type attribute
        # and breaks on "]]>"; type="html" escapes once and is valid in both.
        fe.content(e.html, type="html")
    return fg


def _serialize(root: etree._Element) -> bytes:
    out: bytes = etree.tostring(root, pretty_print=True, xml_declaration=True, encoding="UTF-8")
    return out


FH_NS = "http://purl.org/syndication/history/1.0"  # RFC 5005


def _fix_feedgen_atom(data: bytes, archive: bool = False) -> etree._Element:
    """The one place that corrects feedgen's Atom output."""
    root = etree.fromstring(data)
    if archive:
        # feedgen has no RFC 5005 support: mark the archive document here.
        # A fresh root declares the fh prefix once, at the top.
        marked = etree.Element(root.tag, nsmap={None: ATOM_NS, "fh": FH_NS})
        marked.attrib.update(root.attrib)
        marked.append(etree.Element(f"{{{FH_NS}}}archive"))
        marked.extend(list(root))
        root = marked
    for entry in root.iterfind(_A + "entry"):
        for link in entry.iterfind(_A + "link"):
            # feedgen pitfall: FeedEntry.atom_entry shadows its link dict with
            # the new element, so rel and type are dropped.
            link.set("rel", "alternate")
            link.set("type", "text/html")
        content = entry.find(_A + "content")
        if content is not None and content.get("type") != "html":
            raise RenderError("atom feed", f"unexpected content type {content.get('type')!r}")
    for el in root.iter(_A + "title", _A + "subtitle", _A + "summary"):
        _declare_text_construct(el)
    return root


# The W3C validator's ContainsUndeclaredHTML heuristic (a tag or an entity
# reference), slightly wider: plain text that looks like HTML.
_HTMLISH = re.compile(r"<[A-Za-z/!?]|&#?\w+;")


def _declare_text_construct(el: etree._Element) -> None:
    """Plain text that reads as HTML goes out as escaped ``type="html"`` so
    no reader (or validator) mistakes it for markup; the rest stays the
    default ``type="text"``."""
    text = el.text or ""
    if el.get("type") in (None, "text") and _HTMLISH.search(text):
        el.set("type", "html")
        el.text = str(escape(text))


# RSS titles, categories and creators are plain text; the W3C validator
# (CharacterData) wants a literal "<" or "&" there as a hexadecimal
# character reference rather than "&lt;"/"&amp;".
_RSS_PLAIN = re.compile(rb"(<(title|category|dc:creator)>)([^<]*)(</\2>)")


def _hex_refs(match: re.Match[bytes]) -> bytes:
    text = match.group(3).replace(b"&amp;", b"&#x26;").replace(b"&lt;", b"&#x3C;")
    return match.group(1) + text + match.group(4)


def _fix_feedgen_rss(data: bytes, cfg: Config) -> etree._Element:
    """The one place that corrects feedgen's RSS output."""
    root = etree.fromstring(data)
    channel = root.find("channel")
    link = None if channel is None else channel.find("link")
    if channel is None or link is None:
        raise RenderError("rss feed", "feedgen wrote no channel link")
    # feedgen pitfall: the channel <link> is the *last* link added (self or
    # hub), not the site's home page.
    link.text = cfg.site.url("")
    # Readers render the channel description as HTML, like item descriptions.
    description = channel.find("description")
    if description is not None:
        description.text = str(escape(description.text or ""))
    if cfg.feeds.hub:
        # feedgen pitfall: RSS keeps only the rel=self atom:link; hub is dropped.
        self_link = channel.find(_A + "link")
        hub = etree.Element(_A + "link", href=cfg.feeds.hub, rel="hub")
        if self_link is not None:
            self_link.addnext(hub)
        else:
            channel.append(hub)
    return root


# Entries are rendered once each, by feedgen, as one-entry feeds corrected
# like any other; their XML is cut out and cached. A feed is then its
# header (feedgen, no entries) with the cached entries spliced in, which
# makes re-rendering a feed whose stories did not change nearly free.
_FRAGMENT_INFO = _FeedInfo("", "fragment", "fragment")
_FRAGMENT_MEMO = IdentityMemo[tuple[bytes, bytes]](1024)
# Declarations the feed's root element already makes; a cut-out element
# repeats them, harmlessly but needlessly.
_ATOM_DECLS = (b' xmlns="http://www.w3.org/2005/Atom"',)
_RSS_DECLS = (
    b' xmlns:dc="http://purl.org/dc/elements/1.1/"',
    b' xmlns:atom="http://www.w3.org/2005/Atom"',
    b' xmlns:content="http://purl.org/rss/1.0/modules/content/"',
)


def _cut(element: etree._Element | None, decls: tuple[bytes, ...]) -> bytes:
    if element is None:
        raise RenderError("feed entry", "feedgen wrote no entry")
    data: bytes = etree.tostring(element, pretty_print=True, encoding="UTF-8", xml_declaration=False, with_tail=False)
    end = data.index(b">")
    head = data[:end]
    for decl in decls:
        head = head.replace(decl, b"")
    return head + data[end:]


def _fragments(e: Entry, cfg: Config) -> tuple[bytes, bytes]:
    """(Atom <entry>, RSS <item>) of one entry, from cache when its story is unchanged."""
    owners, extra = (cfg, e.brief), (e.published, e.updated)
    hit = _FRAGMENT_MEMO.get(owners, extra)
    if hit is not None:
        return hit
    atom_root = _fix_feedgen_atom(_feedgen(_FRAGMENT_INFO, [e], cfg, "atom").atom_str(pretty=False))
    fg = _feedgen(_FRAGMENT_INFO, [e], cfg, "rss")
    with _RSS_LOCALE_LOCK:
        rss_data: bytes = fg.rss_str(pretty=False)
    rss_root = _fix_feedgen_rss(rss_data, cfg)
    value = (_cut(atom_root.find(_A + "entry"), _ATOM_DECLS), _cut(rss_root.find("channel/item"), _RSS_DECLS))
    _FRAGMENT_MEMO.put(owners, extra, value)
    return value


def _splice(head: bytes, close: bytes, parts: Iterable[bytes]) -> bytes:
    at = head.rindex(close)
    return head[:at] + b"".join(parts) + head[at:]


def _with_stylesheet(data: bytes, cfg: Config) -> bytes:
    """A feed opened in a browser shows a readable page (public/feed.xsl); readers ignore the PI."""
    decl, sep, rest = data.partition(b"?>\n")
    href = escape(cfg.site.url("feed.xsl")).encode()
    return decl + sep + b'<?xml-stylesheet type="text/xsl" href="' + href + b'"?>\n' + rest


def _atom(info: _FeedInfo, entries: Sequence[Entry], cfg: Config) -> bytes:
    fg = _feedgen(info, [], cfg, "atom", updated=_feed_updated(entries))
    head = _with_stylesheet(_serialize(_fix_feedgen_atom(fg.atom_str(pretty=False), info.archive)), cfg)
    return _splice(head, b"</feed>", (_fragments(e, cfg)[0] for e in entries))


# feedgen pitfall: its RSS date formatting switches the process-wide locale
# to "C" and back (feedgen.util.formatRFC2822); two threads doing it at once
# can leave the wrong locale behind. Parallel builds serialise on this lock.
_RSS_LOCALE_LOCK = threading.Lock()


def _rss(info: _FeedInfo, entries: Sequence[Entry], cfg: Config) -> bytes:
    fg = _feedgen(info, [], cfg, "rss", updated=_feed_updated(entries))
    with _RSS_LOCALE_LOCK:
        data: bytes = fg.rss_str(pretty=False)
    head = _with_stylesheet(_serialize(_fix_feedgen_rss(data, cfg)), cfg)
    # Hex character references last: lxml would turn them back into &lt;.
    return _RSS_PLAIN.sub(_hex_refs, _splice(head, b"</channel>", (_fragments(e, cfg)[1] for e in entries)))


def _rfc3339(value: dt.datetime) -> str:
    return value.isoformat()


def _json(info: _FeedInfo, entries: Sequence[Entry], cfg: Config) -> bytes:
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
        "items": [
            {
                "id": e.id,
                "url": e.link,
                "title": e.title,
                "summary": e.summary,
                "content_html": e.html,
                "date_published": _rfc3339(e.published),
                "date_modified": _rfc3339(e.updated),
                "authors": [author],
                "tags": list(e.categories),
            }
            for e in entries
        ],
    }
    if site.icon:
        feed["icon"] = site.icon
        feed["favicon"] = site.icon
    if cfg.feeds.hub:
        feed["hubs"] = [{"type": "WebSub", "url": cfg.feeds.hub}]
    return (json.dumps(feed, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _render_one(info: _FeedInfo, entries: Sequence[Entry], cfg: Config, out: dict[str, bytes]) -> None:
    out[f"{info.path}feed.atom"] = _atom(info, entries, cfg)
    out[f"{info.path}feed.rss"] = _rss(info, entries, cfg)
    out[f"{info.path}feed.json"] = _json(info, entries, cfg)


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


def _archives(main: _FeedInfo, entries: Sequence[Entry], cfg: Config, out: dict[str, bytes]) -> tuple[_FeedInfo, int]:
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
        info = _FeedInfo(
            "archive/", f"{main.title} (archive {number})", main.subtitle, name=str(number), links=tuple(links), archive=True
        )
        # Within a page, newest first like every other feed.
        out[f"archive/{number}.atom"] = _atom(info, page[::-1], cfg)
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
    site = cfg.site
    title = line(site.title)
    out: dict[str, bytes] = {}
    entries = _newest_first(stories, cfg)
    if only is None or MAIN_FEED in only:
        main, keep = _FeedInfo("", title, line(site.subtitle)), size
        if cfg.feeds.archive:
            main, keep = _archives(main, entries, cfg, out)
        _render_one(main, entries[:keep], cfg, out)
    if cfg.feeds.tag_feeds:
        # One pass over the stories, newest first: linear in stories × tags.
        by_tag: dict[str, list[Entry]] = {}
        names: dict[str, str] = {}
        for e in entries:
            for slug, name in e.keys:
                bucket = by_tag.setdefault(slug, [])
                names.setdefault(slug, name)
                if len(bucket) < size:
                    bucket.append(e)
        for slug in sorted(by_tag):
            if only is not None and slug not in only:
                continue
            info = _FeedInfo(f"tags/{slug}/", f"{title}: {names[slug]}", f"Stories tagged {names[slug]}")
            _render_one(info, by_tag[slug], cfg, out)
    log.info("feeds: %d stories, %d files", len(entries), len(out))
    return out


__all__ = ["FeedStory", "render_feeds", "MAIN_FEED"]
