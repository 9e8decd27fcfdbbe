"""Feed validity: the RFC 4287 RELAX NG schema, the JSON Feed 1.1 schema, and
one explicit check per W3C Feed Validator message the issue names.

The W3C validator is a web service we cannot call from CI, so each message it
would raise is restated here as the rule it applies (see docs/feeds.md):

* MissingSelf / MissingAtomSelfLink: Atom ``link rel=self``, RSS ``atom:link rel=self``.
* ContainsRelRef: every href/src in entry HTML is an absolute http(s) URL.
* CharacterData: a ``<`` or ``&`` in RSS ``<title>`` is a hex character reference.
* ContainsUndeclaredHTML: Atom text that looks like HTML carries ``type="html"``.
* DuplicateAtomLink: no two alternate links with the same type and hreflang.
* InvalidMIMEType: ``type`` is text/html/xhtml or a media type (never "CDATA").
* MissingElement author: an author on the Atom feed or on every entry.
* MissingDCLanguage: RSS channel has ``<language>``.

Field-by-field feedparser round trips of ordinary briefs live in
tests/test_feeds.py; this file feeds the renderer hostile input.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import feedparser
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from lxml import html as lxml_html

from publisher.core import config
from publisher.briefs import load_brief, parse_brief, slugify
from publisher.core.config import Config
from publisher.render.feeds import FeedStory, render_feeds
from publisher.briefs.model import Brief

from tests.support.files import ROOT
from tests.support.project import build_config
SCHEMAS = ROOT / "tests" / "schemas"
DATA = ROOT / "tests" / "data" / "briefs"
BASE = "https://news.example.org/briefs/"

ATOM = "http://www.w3.org/2005/Atom"
A = "{%s}" % ATOM
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
CONTENT_ENCODED = "{http://purl.org/rss/1.0/modules/content/}encoded"
DC_CREATOR = "{http://purl.org/dc/elements/1.1/}creator"

# XML 1.0 Char production, negated (what must never reach a feed), plus the
# C1 controls XML 1.0 merely discourages: the W3C validator reports them as
# BadCharacters and feedparser reads them as windows-1252 (U+0080 becomes "€"),
# so readers would disagree about the text. U+FFFD (a decoding accident) is a
# BadCharacters warning too.
XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffd\ufffe\uffff]")
# The W3C validator's own tests for "this plain text is really HTML":
# an end tag of an HTML element, or an entity/character reference.
HTML_END_TAG = re.compile(r"</(\w+)>")
HTML_ENTITY = re.compile(r"&(#?\w+);")
HTML_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "div", "em", "h1", "h2", "h3", "i", "iframe",
    "img", "li", "ol", "p", "pre", "script", "span", "strong", "style", "table", "td", "th", "tr", "u", "ul",
}

ATOM_SCHEMA = etree.RelaxNG(etree.parse(str(SCHEMAS / "atom.rng")))
JSONFEED_SCHEMA = json.loads((SCHEMAS / "jsonfeed-1.1.schema.json").read_text(encoding="utf-8"))
jsonschema.Draft202012Validator.check_schema(JSONFEED_SCHEMA)
JSONFEED = jsonschema.Draft202012Validator(JSONFEED_SCHEMA)

# Front matter can carry what the body parser strips: YAML escapes decode to
# control characters after the parser's own clean-up has run.
HOSTILE_YAML = '''---
title: "Ctrl \\x01 and \\x1f, C1 \\x80\\x9f, \\ufffd, ]]> & <b>bold</b> </script> &amp; \\"q\\" end"
slug: hostile-yaml
date: 2026-05-01T09:30:00+02:00
tags: ["C++ & <Rust>", "tab\\tsep", "Ünïcödé"]
---
# ignored
> Dek ]]> with &nbsp; and <i>i</i> &amp;

**Meta:** type: event · date: 2026-05-01 · 2 takes · 1 lens · 2 regions

## Summary

Text with [js](javascript:alert(1)), [rel](/en/entity/x), [ok](https://ok.example/?a=1&b=2) and <script>alert(1)</script>.

## Why it matters

Because ]]> breaks naive CDATA.

## What to watch

- <iframe src="https://evil.example"></iframe>

## Regional takes

### <Lens> ]]>
- **<script>x</script>** (Ελλάδα, el) — take ]]> here with [link](https://ok.example/a?b=1&c=2).
  > "Quote ]]> &amp; <b>"
  Source: https://ok.example/src?x=1&y=2
- **日本経済新聞** (日本, ja) — 東京の見方。
  Source: https://www.nikkei.com/article/x

## Across the graph
- Entities: <script>, Ελλάδα Bank, Normal Entity

Canonical: https://example.org/n/hostile-yaml
'''

DRAFT = """---
title: Draft only
slug: draft-only
status: draft
date: 2026-12-01
tags: [secret-tag]
---
# Draft only

## Summary

Not for readers yet.
"""


def make_cfg(**sections: dict[str, Any]) -> Config:
    data: dict[str, dict[str, Any]] = {"site": {"base_url": BASE, "title": "Briefs & <Co>", "timezone": "Europe/Berlin"}}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return build_config(None, **data)


CONFIGS = {
    "plain": make_cfg(),
    "full": make_cfg(
        site={"author_email": "desk@example.org", "icon": "https://news.example.org/icon.png",
              "logo": "https://news.example.org/logo.png", "language": "de-CH"},
        feeds={"hub": "https://hub.example.org/"},
    ),
    # A zone whose offset is not a whole or half hour: RFC 822 dates written
    # in it (+0545) fail the validator's RSS date rule.
    "kathmandu": make_cfg(site={"timezone": "Asia/Kathmandu", "language": "ne"}),
}


def _story(brief: Brief, tz: dt.tzinfo, *, edited: bool = False) -> FeedStory:
    published = brief.published_at(tz)
    return FeedStory(brief, published, published + dt.timedelta(hours=3 if edited else 0))


def stories_for(cfg: Config) -> list[FeedStory]:
    briefs = [load_brief(p, base_url=cfg.site.base_url) for p in sorted(DATA.iterdir()) if p.suffix in (".md", ".txt")]
    briefs.append(parse_brief(HOSTILE_YAML.encode(), "hostile-yaml.md", base_url=cfg.site.base_url))
    briefs.append(parse_brief(DRAFT.encode(), "draft.md", base_url=cfg.site.base_url))
    seen: set[str] = set()
    out = []
    for i, b in enumerate(briefs):
        if b.slug not in seen:  # reference.txt exists twice under different names
            seen.add(b.slug)
            out.append(_story(b, cfg.site.tz, edited=i % 2 == 0))
    return out


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def rendered(request: pytest.FixtureRequest) -> tuple[Config, list[FeedStory], dict[str, bytes]]:
    cfg = CONFIGS[request.param]
    stories = stories_for(cfg)
    return cfg, stories, render_feeds(stories, cfg)


def by_ext(out: dict[str, bytes], ext: str) -> Iterator[tuple[str, bytes]]:
    for path in sorted(out):
        if path.endswith("." + ext):
            yield path, out[path]


def xml(data: bytes) -> etree._Element:
    # Strict parser: no recovery, so any well-formedness slip fails the test.
    parser = etree.XMLParser(recover=False, resolve_entities=False, no_network=True)
    return etree.fromstring(data, parser)


# ---------------------------------------------------------------- schemas


def test_every_atom_feed_is_valid_rfc4287(rendered: tuple[Config, list[FeedStory], dict[str, bytes]]) -> None:
    _, _, out = rendered
    atoms = list(by_ext(out, "atom"))
    assert len(atoms) > 3  # main feed plus tag feeds
    for path, data in atoms:
        doc = xml(data)
        assert ATOM_SCHEMA.validate(doc), f"{path}: {ATOM_SCHEMA.error_log}"


def test_the_atom_schema_rejects_what_rfc4287_forbids(rendered: tuple[Config, list[FeedStory], dict[str, bytes]]) -> None:
    """The schema check above is only worth something if it can fail."""
    _, _, out = rendered
    good = xml(out["feed.atom"])
    assert ATOM_SCHEMA.validate(good)

    def broken(mutate: Any) -> bool:
        doc = xml(out["feed.atom"])
        mutate(doc)
        return bool(ATOM_SCHEMA.validate(doc))

    def drop_entry_id(doc: etree._Element) -> None:
        entry = doc.find(A + "entry")
        entry.remove(entry.find(A + "id"))

    def cdata_type(doc: etree._Element) -> None:
        doc.find(A + "entry").find(A + "content").set("type", "CDATA")

    def bad_date(doc: etree._Element) -> None:
        doc.find(A + "updated").text = "Wed, 24 Jun 2026 00:00:00 +0000"

    def two_titles(doc: etree._Element) -> None:
        doc.append(etree.Element(A + "title"))

    for mutate in (drop_entry_id, cdata_type, bad_date, two_titles):
        assert not broken(mutate), mutate.__name__


def test_every_json_feed_matches_the_1_1_schema(rendered: tuple[Config, list[FeedStory], dict[str, bytes]]) -> None:
    cfg, _, out = rendered
    for path, data in by_ext(out, "json"):
        feed = json.loads(data.decode("utf-8"))
        errors = sorted(JSONFEED.iter_errors(feed), key=str)
        assert not errors, f"{path}: {errors[0]}"
        assert feed["feed_url"] == cfg.site.url(path)
        ids = [item["id"] for item in feed["items"]]
        assert len(ids) == len(set(ids)), path
    # ...and the schema is strict enough to notice a missing id or content.
    feed = json.loads(out["feed.json"])
    del feed["items"][0]["content_html"]
    assert not JSONFEED.is_valid(feed)


# ---------------------------------------------------------------- W3C flags, one test each


def test_missing_self(rendered: tuple[Config, list[FeedStory], dict[str, bytes]]) -> None:
    """MissingSelf (Atom) and MissingAtomSelfLink (RSS): rel=self names the file itself."""
    cfg, _, out = rendered
    for path, data in by_ext(out, "atom"):
        selfs = [ln for ln in xml(data).findall(A + "link") if ln.get("rel") == "self"]
        assert [(ln.get("href"), ln.get("type")) for ln in selfs] == [(cfg.site.url(path), "application/atom+xml")], path
    for path, data in by_ext(out, "rss"):
        channel = xml(data).find("channel")
        selfs = [ln for ln in channel.findall(A + "link") if ln.get("rel") == "self"]
        assert [(ln.get("href"), ln.get("type")) for ln in selfs] == [(cfg.site.url(path), "application/rss+xml")], path


def _entry_html(out: dict[str, bytes]) -> Iterator[tuple[str, str]]:
    for path, data in by_ext(out, "atom"):
        for el in xml(data).iter(A + "content", A + "summary"):
            if el.get("type") == "html":
                yield path, el.text or ""
    for path, data in by_ext(out, "rss"):
        for el in xml(data).iter(CONTENT_ENCODED):
            yield path, el.text or ""
        for el in xml(data).iterfind("channel/item/description"):
            yield path, el.text or ""
    for path, data in by_ext(out, "json"):
        for item in json.loads(data)["items"]:
            yield path, item.get("content_html", "")


def test_contains_rel_ref(rendered: tuple[Config, list[FeedStory], dict[str, bytes]]) -> None:
    """ContainsRelRef: every link or image in entry HTML is absolute http(s)."""
    _, _, out = rendered
    checked = 0
    for path, fragment in _entry_html(out):
        if not fragment.strip():
            continue
        for el in lxml_html.fragments_fromstring(fragment, no_leading_text=False):
            if not isinstance(el, etree._Element):
                continue
            for node in el.iter():
                for attr in ("href", "src", "cite", "action", "background", "poster"):
                    value = node.get(attr)
                    if value is not None:
                        checked += 1
                        assert re.match(r"^https?://[^/\s]+", value), f"{path}: {attr}={value!r}"
                assert node.tag not in ("script", "iframe", "img", "style", "object"), f"{path}: <{node.tag}> in HTML"
    assert checked > 20  # the briefs do carry links: the loop really ran


def test_rss_title_character_data(rendered: tuple[Config, list[FeedStory], dict[str, bytes]]) -> None:
    """CharacterData: "<" and "&" in RSS titles are hex character references."""
    _, _, out = rendered
    hostile_seen = False
    for path, data in by_ext(out, "rss"):
        for raw in re.findall(rb"<title>(.*?)</title>", data, re.S):
            assert b"&lt;" not in raw and b"&amp;" not in raw, f"{path}: {raw!r}"
            hostile_seen |= b"&#x3C;" in raw and b"&#x26;" in raw
    assert hostile_seen, "the hostile titles should have needed &#x3C; and &#x26;"


def test_rss_channel_description_carries_no_markup(rendered: tuple[Config, list[FeedStory], dict[str, bytes]]) -> None:
    """Readers render RSS descriptions as HTML, so a tag named "<script>" must
    reach them escaped, as text, in the tag feed's channel description too."""
    _, _, out = rendered
    assert "tags/script/feed.rss" in out
    for path, data in by_ext(out, "rss"):
        description = xml(data).findtext("channel/description") or ""
        assert not re.search(r"<[A-Za-z/!?]", description), f"{path}: {description!r}"


def _looks_like_html(text: str) -> bool:
    tags = [t for t in HTML_END_TAG.findall(text) if t.lower() in HTML_TAGS]
    return bool(tags or HTML_ENTITY.search(text))


def test_atom_html_is_declared(rendered: tuple[Config, list[FeedStory], dict[str, bytes]]) -> None:
    """ContainsUndeclaredHTML: text that reads as HTML must say type="html"."""
    _, _, out = rendered
    for path, data in by_ext(out, "atom"):
        doc = xml(data)
        for el in doc.iter(A + "title", A + "subtitle", A + "summary", A + "content", A + "rights"):
            kind = el.get("type", "text")
            if kind == "text":
                assert not _looks_like_html(el.text or ""), f"{path}: <{etree.QName(el).localname}> {el.text!r}"
        for content in doc.iter(A + "content"):
            assert content.get("type") == "html", path


def test_duplicate_atom_link(rendered: tuple[Config, list[FeedStory], dict[str, bytes]]) -> None:
    """DuplicateAtomLink: one alternate per (type, hreflang); one self, one hub."""
    _, _, out = rendered
    for path, data in by_ext(out, "atom"):
        doc = xml(data)
        for owner in (doc, *doc.findall(A + "entry")):
            links = owner.findall(A + "link")
            alternates = [(ln.get("type"), ln.get("hreflang")) for ln in links if ln.get("rel", "alternate") == "alternate"]
            assert len(alternates) == len(set(alternates)), path
            for rel in ("self", "hub", "current", "prev-archive", "next-archive"):
                assert sum(ln.get("rel") == rel for ln in links) <= 1, (path, rel)
            if owner is not doc:
                # feedgen drops an entry link's rel and type: make sure they are back.
                assert [(ln.get("rel"), ln.get("type")) for ln in links] == [("alternate", "text/html")], path
    for path, data in by_ext(out, "rss"):
        channel = xml(data).find("channel")
        rels = [ln.get("rel") for ln in channel.findall(A + "link")]
        assert len(rels) == len(set(rels)), path


def test_invalid_mime_type(rendered: tuple[Config, list[FeedStory], dict[str, bytes]]) -> None:
    """InvalidMIMEType: never type="CDATA"; text constructs text|html|xhtml; links a media type."""
    _, _, out = rendered
    for path, data in out.items():
        assert b'type="CDATA"' not in data, path
    for path, data in by_ext(out, "atom"):
        for el in xml(data).iter():
            if not isinstance(el.tag, str) or el.get("type") is None:
                continue
            name = etree.QName(el).localname
            if name in ("title", "subtitle", "summary", "rights", "content"):
                assert el.get("type") in ("text", "html", "xhtml"), (path, name, el.get("type"))
            else:
                assert re.fullmatch(r"[\w.+-]+/[\w.+-]+", el.get("type", "")), (path, name, el.get("type"))


def test_missing_author(rendered: tuple[Config, list[FeedStory], dict[str, bytes]]) -> None:
    """MissingElement author: Atom feed or every entry; RSS items name one too."""
    cfg, _, out = rendered
    for path, data in by_ext(out, "atom"):
        doc = xml(data)
        feed_author = doc.find(A + "author")
        for entry in doc.findall(A + "entry"):
            author = entry.find(A + "author")
            assert author is not None or feed_author is not None, path
            name = (author if author is not None else feed_author).find(A + "name")
            assert name is not None and (name.text or "").strip() == cfg.site.author, path
    for path, data in by_ext(out, "rss"):
        for item in xml(data).iter("item"):
            author = item.findtext("author")
            creator = item.findtext(DC_CREATOR)
            if cfg.site.author_email:
                # RSS <author> must be an email address: "email (name)".
                assert author == f"{cfg.site.author_email} ({cfg.site.author})", path
            else:
                assert author is None and creator == cfg.site.author, path


def test_missing_dc_language(rendered: tuple[Config, list[FeedStory], dict[str, bytes]]) -> None:
    """MissingDCLanguage: RSS <language>; Atom xml:lang; JSON language."""
    cfg, _, out = rendered
    for path, data in by_ext(out, "rss"):
        assert xml(data).find("channel").findtext("language") == cfg.site.language, path
    for path, data in by_ext(out, "atom"):
        assert xml(data).get(XML_LANG) == cfg.site.language, path
    for path, data in by_ext(out, "json"):
        assert json.loads(data)["language"] == cfg.site.language, path


# The rules below are the validator's own (rubys/feedvalidator, the code behind
# the W3C service: validators.py and entry.py), restated.
FV_TAG = re.compile(
    r"^tag:([a-z0-9\-\._]+?@)?[a-z0-9\.\-]+?,\d{4}(-\d{2}(-\d{2})?)?:[0-9a-zA-Z;/\?:@&=+$\.\-_!~*'\(\)%,]*"
    r"(#[0-9a-zA-Z;/\?:@&=+$\.\-_!~*'\(\)%,]*)?$"
)
FV_RFC3339 = re.compile(r"^\d\d\d\d-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*)?(Z|([+-]\d\d:\d\d))$")
FV_RFC2822 = re.compile(
    r"(((Mon)|(Tue)|(Wed)|(Thu)|(Fri)|(Sat)|(Sun)), )?\d\d? ((Jan)|(Feb)|(Mar)|(Apr)|(May)|(Jun)|(Jul)|(Aug)|(Sep)|(Oct)|"
    r"(Nov)|(Dec)) \d\d\d\d \d\d:\d\d(:\d\d)? (([+-]?\d\d[03]0)|(UT)|(GMT)|(EST)|(EDT)|(CST)|(CDT)|(MST)|(MDT)|(PST)|(PDT)|Z)$"
)
FV_FULL_URI = re.compile(r"[a-zA-Z][0-9a-zA-Z+\-\.]*:(//)?[0-9a-zA-Z;/?:@&=+$\.\-_!~*'()%,#]+$")
# HTML character references the validator reports as BadCharacters.
FV_BAD_CHARREF = re.compile(r"&#(?:[xX]0*(?:[89][0-9a-fA-F]|[fF]{3}[dD])|0*(?:12[89]|1[3-5][0-9]|65533));")


def test_ids_dates_and_uris_pass_the_validators_own_patterns(rendered: tuple[Config, list[FeedStory], dict[str, bytes]]) -> None:
    """InvalidTAG, NonCanonicalURI, InvalidRFC3339Date, InvalidRFC2822Date,
    UnexpectedWhitespace (ids, dates, icon and logo carry no padding)."""
    _, _, out = rendered
    for path, data in by_ext(out, "atom"):
        doc = xml(data)
        for entry in doc.findall(A + "entry"):
            entry_id = entry.findtext(A + "id")
            assert FV_TAG.match(entry_id), (path, entry_id)
            host = entry_id[4:].split(",", 1)[0]
            assert host == host.lower(), (path, entry_id)  # canonical form: lower-case authority
        assert FV_FULL_URI.match(doc.findtext(A + "id")), path
        for el in doc.iter(A + "updated", A + "published"):
            assert FV_RFC3339.match(el.text or ""), (path, el.text)
        for el in doc.iter(A + "id", A + "updated", A + "published", A + "icon", A + "logo"):
            assert el.text == (el.text or "").strip(), (path, el.text)
    for path, data in by_ext(out, "rss"):
        doc = xml(data)
        for el in doc.iter("pubDate", "lastBuildDate"):
            assert FV_RFC2822.match(el.text or ""), (path, el.text)
        for guid in doc.iter("guid"):
            assert FV_TAG.match(guid.text or "") and guid.get("isPermaLink") == "false", path


def test_feed_links_are_unique_per_type_rel_and_hreflang(rendered: tuple[Config, list[FeedStory], dict[str, bytes]]) -> None:
    """DuplicateAtomLink as the validator applies it at feed level: every
    (type, rel, hreflang) at most once, whatever the rel."""
    _, _, out = rendered
    for path, data in by_ext(out, "atom"):
        triples = [(ln.get("type"), ln.get("rel", "alternate"), ln.get("hreflang")) for ln in xml(data).findall(A + "link")]
        assert len(triples) == len(set(triples)), (path, triples)


def test_no_bad_character_references_in_html(rendered: tuple[Config, list[FeedStory], dict[str, bytes]]) -> None:
    """BadCharacters inside escaped HTML: &#128;-&#159; and &#xFFFD;."""
    _, _, out = rendered
    for path, fragment in _entry_html(out):
        assert not FV_BAD_CHARREF.search(fragment), path


# ---------------------------------------------------------------- hostile input


def _one_line(text: str) -> str:
    return " ".join(XML_FORBIDDEN.sub("", text).split())


def _parsed(out: dict[str, bytes], path: str) -> Any:
    d = feedparser.parse(out[path])
    assert d.bozo == 0, f"{path}: {d.get('bozo_exception')}"
    return d


def _plain(detail: Any) -> str:
    """feedparser's value as plain text, whatever type the feed declared."""
    value = str(detail.value)
    return html.unescape(value) if detail.type == "text/html" else value


def test_hostile_text_is_escaped_exactly_once(rendered: tuple[Config, list[FeedStory], dict[str, bytes]]) -> None:
    cfg, stories, out = rendered
    hostile = next(s.brief for s in stories if s.brief.slug == "hostile-yaml")
    want_title = _one_line(hostile.title)
    assert "\x01" in hostile.title and "\x01" not in want_title  # the case is really exercised
    for name in ("feed.atom", "feed.rss"):
        d = _parsed(out, name)
        entry = next(e for e in d.entries if e.link == hostile.canonical)
        # Escaped once: the reader shows "<b>bold</b>" as typed, not "&lt;b&gt;" and not bold.
        assert _plain(entry.title_detail) == want_title, name
        assert entry.id.startswith("tag:") and entry.id.endswith(":hostile-yaml")
    item = next(i for i in json.loads(out["feed.json"])["items"] if i["url"] == hostile.canonical)
    assert item["title"] == want_title
    content = item["content_html"]
    # The summary's literal <script> is text in the entry HTML, escaped once.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content
    assert "&amp;lt;" not in content and "<script" not in content and "<iframe" not in content
    assert "javascript:" not in content.lower()
    # A relative link in the brief resolved against the canonical URL or base_url.
    assert re.search(r'href="https://[^"]+/en/entity/x"', content)


def test_no_forbidden_xml_characters_anywhere(rendered: tuple[Config, list[FeedStory], dict[str, bytes]]) -> None:
    _, _, out = rendered
    for path, data in out.items():
        text = data.decode("utf-8")  # also proves the bytes are UTF-8
        assert not XML_FORBIDDEN.search(text), path
        assert not XML_FORBIDDEN.search(json.dumps(json.loads(text), ensure_ascii=False)) if path.endswith(".json") else True
        if not path.endswith(".json"):
            xml(data)


def test_all_formats_parse_cleanly(rendered: tuple[Config, list[FeedStory], dict[str, bytes]]) -> None:
    _, stories, out = rendered
    published = {s.brief.slug for s in stories if not s.brief.is_draft}
    for path in ("feed.atom", "feed.rss"):
        d = _parsed(out, path)
        assert {e.id.rsplit(":", 1)[1] for e in d.entries} == published, path
    assert {i["id"].rsplit(":", 1)[1] for i in json.loads(out["feed.json"])["items"]} == published


def test_drafts_are_never_published(rendered: tuple[Config, list[FeedStory], dict[str, bytes]]) -> None:
    _, _, out = rendered
    assert not any(p.startswith("tags/secret-tag/") for p in out)
    for path, data in out.items():
        assert b"draft-only" not in data and b"Not for readers yet" not in data, path


def test_hub_link_only_when_configured(rendered: tuple[Config, list[FeedStory], dict[str, bytes]]) -> None:
    cfg, _, out = rendered
    for path, data in by_ext(out, "atom"):
        hubs = [ln.get("href") for ln in xml(data).findall(A + "link") if ln.get("rel") == "hub"]
        assert hubs == ([cfg.feeds.hub] if cfg.feeds.hub else []), path
    for path, data in by_ext(out, "rss"):
        hubs = [ln.get("href") for ln in xml(data).find("channel").findall(A + "link") if ln.get("rel") == "hub"]
        assert hubs == ([cfg.feeds.hub] if cfg.feeds.hub else []), path
    for path, data in by_ext(out, "json"):
        hubs = json.loads(data).get("hubs", [])
        assert [h["url"] for h in hubs] == ([cfg.feeds.hub] if cfg.feeds.hub else []), path


def test_icon_and_logo_only_when_configured(rendered: tuple[Config, list[FeedStory], dict[str, bytes]]) -> None:
    cfg, _, out = rendered
    doc = xml(out["feed.atom"])
    assert doc.findtext(A + "icon") == (cfg.site.icon or None)
    assert doc.findtext(A + "logo") == (cfg.site.logo or None)


# ---------------------------------------------------------------- determinism and identity


def test_byte_identical_whatever_the_input_order() -> None:
    cfg = CONFIGS["full"]
    stories = stories_for(cfg)
    first = render_feeds(stories, cfg)
    shuffled = list(stories)
    random.Random(7).shuffle(shuffled)
    assert render_feeds(shuffled, cfg) == first
    assert render_feeds(tuple(reversed(stories)), cfg) == first


_DIGEST_SCRIPT = """
import hashlib, sys
sys.path.insert(0, {tests!r})
import tests.render.test_feeds_validity as t
cfg = t.CONFIGS["full"]
out = t.render_feeds(t.stories_for(cfg), cfg)
h = hashlib.sha256()
for path in sorted(out):
    h.update(path.encode() + b"\\0" + out[path] + b"\\0")
print(h.hexdigest())
"""


@pytest.mark.slow
def test_byte_identical_across_processes_hash_seeds_and_machine_time_zones() -> None:
    """Set order, the machine's TZ and locale must not leak into the bytes."""
    import os
    import subprocess
    import sys

    script = _DIGEST_SCRIPT.format(tests=str(ROOT))
    digests = set()
    for seed, tz in (("1", "UTC"), ("2", "America/New_York"), ("3", "Asia/Kolkata")):
        env = {**os.environ, "PYTHONHASHSEED": seed, "TZ": tz, "LC_ALL": "C.UTF-8"}
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-2000:]
        digests.add(done.stdout.strip())
    assert len(digests) == 1 and all(re.fullmatch(r"[0-9a-f]{64}", d) for d in digests), digests


def test_id_survives_rename_and_edit_and_updated_moves_only_on_edit() -> None:
    cfg = CONFIGS["plain"]
    original = parse_brief(HOSTILE_YAML.encode(), "2026/hostile.md", base_url=BASE)
    renamed = parse_brief(HOSTILE_YAML.encode(), "archive/renamed-file.md", base_url=BASE)
    edited = parse_brief(HOSTILE_YAML.replace("Because ]]> breaks", "Because, as edited, ]]> breaks").encode(), "x.md", base_url=BASE)
    published = original.published_at(cfg.site.tz)
    later = published + dt.timedelta(days=2)

    def atom_entry(story: FeedStory) -> etree._Element:
        return xml(render_feeds([story], cfg)["feed.atom"]).find(A + "entry")

    a = atom_entry(FeedStory(original, published, published))
    b = atom_entry(FeedStory(renamed, published, published))
    c = atom_entry(FeedStory(edited, published, later))
    assert a.findtext(A + "id") == b.findtext(A + "id") == c.findtext(A + "id")
    assert a.findtext(A + "updated") == b.findtext(A + "updated") != c.findtext(A + "updated")
    assert dt.datetime.fromisoformat(c.findtext(A + "updated")) == later
    assert a.findtext(A + "published") == c.findtext(A + "published")


def test_feed_updated_is_the_newest_entry_not_the_build_time(rendered: tuple[Config, list[FeedStory], dict[str, bytes]]) -> None:
    _, stories, out = rendered
    newest = max(s.updated for s in stories if not s.brief.is_draft)
    doc = xml(out["feed.atom"])
    assert dt.datetime.fromisoformat(doc.findtext(A + "updated")) == newest
    entry_updates = [dt.datetime.fromisoformat(u) for u in doc.xpath("//a:entry/a:updated/text()", namespaces={"a": ATOM})]
    assert max(entry_updates) == newest
    d = _parsed(out, "feed.rss")
    assert d.feed.updated_parsed[:6] == newest.astimezone(dt.timezone.utc).timetuple()[:6]


def test_tag_feeds_hold_only_their_stories(rendered: tuple[Config, list[FeedStory], dict[str, bytes]]) -> None:
    cfg, stories, out = rendered
    hostile = next(s.brief for s in stories if s.brief.slug == "hostile-yaml")
    # Tags and entities both get feeds; names slugify for the path (Greek
    # letters have no ASCII decomposition, so "Ελλάδα Bank" is "bank").
    for slug in ("c-rust", "tab-sep", "unicode", "bank", "normal-entity", "script"):
        assert f"tags/{slug}/feed.atom" in out, sorted(out)
        ids = [e.id for e in _parsed(out, f"tags/{slug}/feed.atom").entries]
        assert any(i.endswith(":hostile-yaml") for i in ids), slug
    assert all(re.fullmatch(r"(tags/[a-z0-9-]+/)?feed\.(atom|rss|json)", p) for p in out), sorted(out)
    assert "<script>" in hostile.entities  # slugifies to "script": still a safe path
    for path, data in by_ext(out, "atom"):
        if path.startswith("tags/"):
            tag_slug = path.split("/")[1]
            for entry in xml(data).findall(A + "entry"):
                slug = entry.findtext(A + "id").rsplit(":", 1)[1]
                story = next(s.brief for s in stories if s.brief.slug == slug)
                assert tag_slug in {slugify(t) for t in (*story.tags, *story.entities)}, (path, slug)


def test_feed_size_keeps_the_newest() -> None:
    cfg = make_cfg(feeds={"size": 2, "tag_feeds": False})
    stories = stories_for(cfg)
    out = render_feeds(stories, cfg)
    assert sorted(out) == ["feed.atom", "feed.json", "feed.rss"]
    live = sorted((s for s in stories if not s.brief.is_draft), key=lambda s: (s.published, s.brief.slug), reverse=True)
    want = [s.brief.slug for s in live[:2]]
    for path in ("feed.atom", "feed.rss"):
        assert [e.id.rsplit(":", 1)[1] for e in _parsed(out, path).entries] == want, path
    assert [i["id"].rsplit(":", 1)[1] for i in json.loads(out["feed.json"])["items"]] == want


def test_empty_feed_is_still_valid_and_stable() -> None:
    cfg = CONFIGS["plain"]
    out = render_feeds([], cfg)
    assert ATOM_SCHEMA.validate(xml(out["feed.atom"])), ATOM_SCHEMA.error_log
    assert JSONFEED.is_valid(json.loads(out["feed.json"]))
    assert feedparser.parse(out["feed.rss"]).bozo == 0
    assert render_feeds([], cfg) == out


# ---------------------------------------------------------------- any title at all


_BASE_BRIEF = parse_brief(HOSTILE_YAML.encode(), "p.md", base_url=BASE)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(title=st.text(min_size=1, max_size=60).filter(lambda t: _squash(t) != ""))
def test_any_title_gives_well_formed_feeds_that_round_trip(title: str) -> None:
    cfg = CONFIGS["plain"]
    brief = dataclasses.replace(_BASE_BRIEF, title=title, tags=(), entities=())
    published = brief.published_at(cfg.site.tz)
    out = render_feeds([FeedStory(brief, published, published)], cfg)
    # Whether a stripped control character also separated two words is the
    # renderer's choice; compare the visible characters and insist on one line.
    want = _squash(title)
    shown = json.loads(out["feed.json"])["items"][0]["title"]
    assert _squash(shown) == want and shown == _one_line(shown)
    for path in ("feed.atom", "feed.rss"):
        assert ATOM_SCHEMA.validate(xml(out[path])) if path.endswith(".atom") else xml(out[path]) is not None
        d = feedparser.parse(out[path])
        assert d.bozo == 0, d.get("bozo_exception")
        if path.endswith(".atom"):
            # Atom declares what it carries, so readers get the exact text back.
            assert _plain(d.entries[0].title_detail) == _as_feedparser_reads(shown)


def _as_feedparser_reads(text: str) -> str:
    """feedparser "repairs" text that looks like UTF-8 decoded as Latin-1
    ("Â¡" becomes "¡") whatever the feed says: a client heuristic no feed
    can opt out of, so the round trip expects it."""
    try:
        return text.encode("iso-8859-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _squash(text: str) -> str:
    return "".join(XML_FORBIDDEN.sub("", text).split())


# ---------------------------------------------------------------- RFC 5005 archives

FH = "{http://purl.org/syndication/history/1.0}"


def _archive_cfg() -> Config:
    return make_cfg(feeds={"archive": True, "size": 2, "archive_page_size": 2, "tag_feeds": False})


def _links(doc: etree._Element) -> dict[str, str]:
    return {ln.get("rel"): ln.get("href") for ln in doc.findall(A + "link")}


def _ids(doc: etree._Element) -> list[str]:
    return [e.findtext(A + "id") for e in doc.findall(A + "entry")]


def test_archive_pages_give_readers_the_whole_history() -> None:
    cfg = _archive_cfg()
    stories = stories_for(cfg)
    out = render_feeds(stories, cfg)
    pages = sorted((p for p in out if p.startswith("archive/")), key=lambda p: int(p.split("/")[1].split(".")[0]))
    assert pages and all(re.fullmatch(r"archive/\d+\.atom", p) for p in pages)
    main = xml(out["feed.atom"])
    assert main.find(FH + "archive") is None
    # Walk back from the subscription document as a reader does (RFC 5005 section 4).
    seen: list[str] = _ids(main)
    url = _links(main).get("prev-archive")
    walked = []
    while url:
        path = url.removeprefix(cfg.site.base_url)
        doc = xml(out[path])
        assert ATOM_SCHEMA.validate(doc), ATOM_SCHEMA.error_log
        assert doc.find(FH + "archive") is not None, path
        links = _links(doc)
        assert links["current"] == cfg.site.url("feed.atom")
        assert links["self"] == url
        seen += _ids(doc)
        walked.append(path)
        url = links.get("prev-archive")
    assert sorted(walked) == sorted(pages)
    published = {s.brief.slug for s in stories if not s.brief.is_draft}
    assert sorted(i.rsplit(":", 1)[1] for i in seen) == sorted(published)  # each story exactly once


def test_archive_pages_never_change_once_published() -> None:
    """RFC 5005 section 4: the entries of an archive document SHOULD NOT
    change. A reader walks prev-archive links back until it meets a page it
    has already fetched and stops there, so a page that later gains a story
    hides that story from it. (Links such as next-archive may be added.)"""
    cfg = _archive_cfg()
    stories = stories_for(cfg)
    newest = max(s.published for s in stories)
    seen_pages: dict[str, list[tuple[str, str]]] = {}
    for n in range(4):  # publish new stories one at a time, as editors do
        if n:
            when = newest + dt.timedelta(days=n)
            fresh = dataclasses.replace(_BASE_BRIEF, slug=f"fresh-{n}", title=f"Fresh {n}", canonical=None)
            stories = [*stories, FeedStory(fresh, when, when)]
        out = render_feeds(stories, cfg)
        for path, data in out.items():
            if path.startswith("archive/"):
                entries = [(e.findtext(A + "id"), e.findtext(A + "updated")) for e in xml(data).findall(A + "entry")]
                assert seen_pages.setdefault(path, entries) == entries, f"{path} changed after {n} new stories"
