"""Atom 1.0 and RSS 2.0 as XML bytes, by feedgen: a feed's head and tail, and its entries' elements.

A feed document is its head (feedgen with no entry), the entries' cut-out
elements, and its tail, joined as bytes (:func:`publisher.render.feeds.assemble`).
Each entry is rendered once, by feedgen, in a feed of the entries made
together, corrected like any other, and its element cut out alone: so a
feed whose stories did not change costs a join, and an edit re-renders only
the edited entry.

feedgen's pitfalls are handled in this file only, each at a comment starting
"feedgen pitfall:": ``updated`` and ``lastBuildDate`` default to now()
(always set from the entries); entry links lose ``rel``/``type``;
``type="CDATA"`` is invalid Atom (we use ``html``); the RSS channel
``<link>`` is the last link added; RSS drops ``rel=hub``; RSS dates flip the
process locale. :func:`_fix_feedgen_atom` and :func:`_fix_feedgen_rss`
post-process the XML; RSS titles, categories and creators get the hex
character references the W3C validator wants (:func:`hex_refs`).
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from feedgen.feed import FeedGenerator
from lxml import etree  # type: ignore[import-untyped]
from markupsafe import escape

from .. import __version__
from ..core.config import Config
from ..core.errors import RenderError
from ..core.memo import IdentityMemo
from .feed_entries import GENERATOR, Entry, line

ATOM_NS = "http://www.w3.org/2005/Atom"
_A = "{%s}" % ATOM_NS
MEDIA_TYPES = {
    "atom": "application/atom+xml",
    "rss": "application/rss+xml",
    "json": "application/feed+json",
}
# A feed with no entry still needs an ``updated``; the epoch keeps it stable.
EMPTY_FEED_UPDATED = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


# ------------------------------------------------------------------ feedgen

@dataclass(frozen=True)
class FeedInfo:
    path: str  # output folder prefix: "" or "tags/<slug>/"
    title: str
    subtitle: str
    name: str = "feed"  # file name without the format suffix
    links: tuple[tuple[str, str], ...] = ()  # extra Atom (rel, href): RFC 5005 paging
    archive: bool = False  # an RFC 5005 archive document (fh:archive)

    def url(self, cfg: Config, fmt: str) -> str:
        return cfg.site.url(f"{self.path}{self.name}.{fmt}")


def _rss_time(value: dt.datetime) -> dt.datetime:
    """RFC 822 zones as the W3C validator reads them are whole or half hours
    (it rejects +0545): such a zone's times go out in UTC in RSS."""
    offset = value.utcoffset() or dt.timedelta(0)
    return value if offset % dt.timedelta(minutes=30) == dt.timedelta(0) else value.astimezone(dt.timezone.utc)


def _feedgen(
    info: FeedInfo, entries: Sequence[Entry], cfg: Config, fmt: str, updated: dt.datetime | None = None
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
    feed_updated = updated or max((e.updated for e in entries), default=EMPTY_FEED_UPDATED)
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


def _hex_ref(match: re.Match[bytes]) -> bytes:
    text = match.group(3).replace(b"&amp;", b"&#x26;").replace(b"&lt;", b"&#x3C;")
    return match.group(1) + text + match.group(4)


def hex_refs(data: bytes) -> bytes:
    """RSS bytes with plain-text elements' ``&amp;``/``&lt;`` as hex character references."""
    return _RSS_PLAIN.sub(_hex_ref, data)


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


# Declarations the feed's root element already makes; a cut-out element
# repeats them, harmlessly but needlessly.
_FRAGMENT_INFO = FeedInfo("", "fragment", "fragment")
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


# feedgen pitfall: its RSS date formatting switches the process-wide locale
# to "C" and back (feedgen.util.formatRFC2822); two threads doing it at once
# can leave the wrong locale behind. Parallel builds serialise on this lock.
_RSS_LOCALE_LOCK = threading.Lock()


def _rss_str(fg: FeedGenerator) -> bytes:
    with _RSS_LOCALE_LOCK:
        data: bytes = fg.rss_str(pretty=False)
    return data


def entries_xml(entries: Sequence[Entry], cfg: Config) -> list[tuple[bytes, bytes]]:
    """(Atom ``<entry>``, RSS ``<item>``) of each entry (distinct ids), ready to join between a feed's
    head and tail, from one feedgen document per format.

    A feedgen document costs about as much as its first few entries, so a
    feed's missing entries are made in one; each element is cut out alone,
    so its bytes do not depend on the entries beside it.
    """
    if not entries:
        return []
    atom_root = _fix_feedgen_atom(_feedgen(_FRAGMENT_INFO, entries, cfg, "atom").atom_str(pretty=False))
    rss_root = _fix_feedgen_rss(_rss_str(_feedgen(_FRAGMENT_INFO, entries, cfg, "rss")), cfg)
    atom = {el.findtext(_A + "id"): el for el in atom_root.iterfind(_A + "entry")}
    rss = {el.findtext("guid"): el for el in rss_root.iterfind("channel/item")}
    # Hex character references last: lxml would turn them back into &lt;.
    return [(_cut(atom.get(e.id), _ATOM_DECLS), hex_refs(_cut(rss.get(e.id), _RSS_DECLS))) for e in entries]


def _with_stylesheet(data: bytes, cfg: Config) -> bytes:
    """A feed opened in a browser shows a readable page (public/feed.xsl); readers ignore the PI."""
    decl, sep, rest = data.partition(b"?>\n")
    href = escape(cfg.site.url("feed.xsl")).encode()
    return decl + sep + b'<?xml-stylesheet type="text/xsl" href="' + href + b'"?>\n' + rest


def _split(doc: bytes, close: bytes) -> tuple[bytes, bytes]:
    at = doc.rindex(close)
    return doc[:at], doc[at:]


# A feed's head changes only with its ``updated`` (the newest entry's):
# an edit that leaves that alone joins cached heads and entries.
_HEAD_MEMO = IdentityMemo[tuple[bytes, bytes, bytes, bytes]](512)


def heads(info: FeedInfo, cfg: Config, updated: dt.datetime) -> tuple[bytes, bytes, bytes, bytes]:
    """(Atom head, Atom tail, RSS head, RSS tail): a feed without entries, cut where they go."""
    hit = _HEAD_MEMO.get((cfg,), (info, updated))
    if hit is not None:
        return hit
    atom = _fix_feedgen_atom(_feedgen(info, [], cfg, "atom", updated=updated).atom_str(pretty=False), info.archive)
    atom_head, atom_tail = _split(_with_stylesheet(_serialize(atom), cfg), b"</feed>")
    rss = _fix_feedgen_rss(_rss_str(_feedgen(info, [], cfg, "rss", updated=updated)), cfg)
    rss_head, rss_tail = _split(_with_stylesheet(_serialize(rss), cfg), b"</channel>")
    value = (atom_head, atom_tail, hex_refs(rss_head), hex_refs(rss_tail))
    _HEAD_MEMO.put((cfg,), (info, updated), value)
    return value
