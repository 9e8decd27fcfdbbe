"""Two independent real clients, three formats, one story.

feedparser (what most Python readers use) and fastfeedparser (an lxml-based
parser that also reads JSON Feed) read every main and tag feed. For each
entry, what a reader would show (id, link, title, dates, categories, summary,
content as visible text) must be the same in every client and every format,
and the same as the JSON Feed read with plain ``json``.

Titles are compared as a reader shows them: an Atom text construct declared
``type="html"`` is rendered (markup stripped, references decoded); RSS titles
are plain text (the RSS best-practice profile), JSON titles always are.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import fastfeedparser
import feedparser
import pytest
from lxml import etree
from lxml import html as lxml_html

from publisher.core.config import Config
from publisher.render.feeds import render_feeds
from tests.render.test_feeds_validity import CONFIGS, A, stories_for, xml


@dataclass(frozen=True)
class Shown:
    """One entry as a reader shows it."""

    id: str
    link: str
    title: str
    published: dt.datetime
    updated: dt.datetime | None  # RSS has no per-item updated
    tags: tuple[str, ...]
    summary: str
    content: str


def _text(value: str) -> str:
    return " ".join(value.split())


def _rendered(fragment: str) -> str:
    """The visible text of an HTML fragment."""
    if not fragment.strip():
        return ""
    return _text(lxml_html.fragment_fromstring(fragment, create_parent="div").text_content())


def _utc(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    return dt.datetime.fromisoformat(value).astimezone(dt.timezone.utc)


def _from_struct(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    return dt.datetime.fromtimestamp(calendar.timegm(value), tz=dt.timezone.utc)


def from_json(data: bytes) -> list[Shown]:
    return [
        Shown(
            id=item["id"],
            link=item["url"],
            title=_text(item["title"]),
            published=_utc(item["date_published"]),  # type: ignore[arg-type]
            updated=_utc(item["date_modified"]),
            tags=tuple(item.get("tags", ())),
            summary=_text(item.get("summary", "")),
            content=_rendered(item["content_html"]),
        )
        for item in json.loads(data)["items"]
    ]


def _atom_types(data: bytes) -> dict[str, dict[str, str]]:
    """Declared type of each Atom entry's title and summary, by entry id."""
    out = {}
    for entry in xml(data).findall(A + "entry"):
        kinds = {}
        for name in ("title", "summary"):
            el = entry.find(A + name)
            kinds[name] = "text" if el is None else el.get("type", "text")
        out[entry.findtext(A + "id")] = kinds
    return out


def _shown(value: str, declared: str) -> str:
    return _rendered(value) if declared == "html" else _text(value)


def with_feedparser(data: bytes, fmt: str) -> list[Shown]:
    d = feedparser.parse(data)
    assert d.bozo == 0, d.get("bozo_exception")
    types = _atom_types(data) if fmt == "atom" else {}
    shown = []
    for e in d.entries:
        declared = types.get(e.id, {"title": "text", "summary": "html"})
        shown.append(
            Shown(
                id=e.id,
                link=e.link,
                # feedparser returns decoded text for type="text" and (sanitised) HTML for
                # type="html"; for an RSS title it only guesses, and the text is plain.
                title=_shown(e.title, declared["title"]),
                published=_from_struct(e.get("published_parsed")),  # type: ignore[arg-type]
                updated=_from_struct(e.get("updated_parsed")) if fmt == "atom" else None,
                tags=tuple(t.term for t in e.get("tags", ())),
                summary=_shown(e.get("summary", ""), declared["summary"]),
                content=_rendered(e.content[0].value),
            )
        )
    return shown


def with_fastfeedparser(data: bytes, fmt: str) -> list[Shown]:
    d = fastfeedparser.parse(data)
    types = _atom_types(data) if fmt == "atom" else {}
    shown = []
    for e in d.entries:
        declared = types.get(e["id"], {"title": "text", "summary": "html" if fmt == "rss" else "text"})
        shown.append(
            Shown(
                id=e["id"],
                link=e["link"],
                title=_shown(e["title"], declared["title"]),
                published=_utc(e.get("published")),  # type: ignore[arg-type]
                updated=_utc(e.get("updated")) if fmt != "rss" else None,
                tags=tuple(t["term"] for t in e.get("tags", ())),
                summary=_shown(e.get("description") or "", declared["summary"]),
                content=_rendered(e["content"][0]["value"]),
            )
        )
    return shown


def _expected(truth: list[Shown], fmt: str) -> list[Shown]:
    # RSS has nowhere to put an item's updated time.
    return [Shown(**{**s.__dict__, "updated": None}) for s in truth] if fmt == "rss" else truth


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def feeds(request: pytest.FixtureRequest) -> tuple[Config, dict[str, bytes]]:
    cfg = CONFIGS[request.param]
    return cfg, render_feeds(stories_for(cfg), cfg)


def _prefixes(out: dict[str, bytes]) -> list[str]:
    return sorted({path.rsplit("feed.", 1)[0] for path in out if path.rsplit("/", 1)[-1].startswith("feed.")})


@pytest.mark.parametrize("client", ["feedparser", "fastfeedparser"])
def test_every_client_shows_the_same_entries_in_every_format(feeds: tuple[Config, dict[str, bytes]], client: str) -> None:
    _, out = feeds
    read = {"feedparser": with_feedparser, "fastfeedparser": with_fastfeedparser}[client]
    compared = 0
    for prefix in _prefixes(out):
        truth = from_json(out[f"{prefix}feed.json"])
        assert truth, prefix
        formats = ("atom", "rss", "json") if client == "fastfeedparser" else ("atom", "rss")
        for fmt in formats:
            got = read(out[f"{prefix}feed.{fmt}"], fmt)
            want = _expected(truth, fmt)
            assert len(got) == len(want), (prefix, fmt)
            for g, w in zip(got, want):
                assert g == w, f"{client} reads {prefix}feed.{fmt} differently:\n got {g}\nwant {w}"
                compared += 1
    assert compared > 20


def test_the_hostile_entry_reads_as_typed_everywhere(feeds: tuple[Config, dict[str, bytes]]) -> None:
    """The one story whose title, dek and takes are full of markup and "]]>"."""
    _, out = feeds
    truth = next(s for s in from_json(out["feed.json"]) if s.id.endswith(":hostile-yaml"))
    assert "<b>bold</b>" in truth.title and "]]>" in truth.title  # shown as typed, not as markup
    assert "<i>i</i>" in truth.summary
    assert "<script>x</script>" in truth.content and "“Quote ]]> &amp; <b>”" in truth.content
    for fmt in ("atom", "rss"):
        for read in (with_feedparser, with_fastfeedparser):
            entry = next(s for s in read(out[f"feed.{fmt}"], fmt) if s.id == truth.id)
            assert (entry.title, entry.summary, entry.content) == (truth.title, truth.summary, truth.content), (read.__name__, fmt)


def test_feed_level_fields_agree(feeds: tuple[Config, dict[str, bytes]]) -> None:
    cfg, out = feeds
    for prefix in _prefixes(out):
        doc = json.loads(out[f"{prefix}feed.json"])
        atom = xml(out[f"{prefix}feed.atom"])
        title = atom.find(A + "title")
        assert _shown(title.text or "", title.get("type", "text")) == _text(doc["title"]), prefix
        rss = feedparser.parse(out[f"{prefix}feed.rss"])
        assert _text(rss.feed.title) == _text(doc["title"]), prefix
        assert rss.feed.link == doc["home_page_url"] == cfg.site.url(""), prefix
        assert etree.QName(atom).localname == "feed"
