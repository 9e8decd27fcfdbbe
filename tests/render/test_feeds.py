"""publisher.feeds: every field read back by feedparser in all three formats,
ordering, drafts, tag feeds, determinism and golden files.

(RELAX NG validation, the W3C validator flags and hostile input are in
tests/test_feeds_validity.py.)
"""

from __future__ import annotations

import re

import calendar
import dataclasses
import html
import datetime as dt
import json
from pathlib import Path
from typing import Any

import feedparser
import lxml.html  # type: ignore[import-untyped]
import pytest
from lxml import etree

from publisher.core import config
from publisher.briefs import parse_brief
from publisher.core.config import Config
from publisher.render.feeds import MAIN_FEED, FeedStory, render_feeds
from publisher.render.feed_entries import categories, entry_html, entry_id
from publisher.briefs.model import Brief

from tests.support.files import DATA, GOLDEN, assert_golden
from tests.support.project import build_config

UTC = dt.timezone.utc
BASE = "https://briefs.example.org/"
FORMATS = ("atom", "rss", "json")


def make_cfg(tmp_path: Path, **feeds: Any) -> Config:
    site = {
        "base_url": BASE,
        "title": "Briefs & <Co>",
        "subtitle": "How the world covered it",
        "author": "The Desk",
        "timezone": "Europe/Berlin",
        "language": "en",
    }
    return build_config(tmp_path, site=site, feeds=feeds)


def brief_text(
    slug: str,
    title: str,
    *,
    date: str = "2026-06-24",
    tags: tuple[str, ...] = ("ai", "policy"),
    status: str = "published",
    entities: str = "Anthropic, Alibaba Qwen",
    canonical: str | None = None,
) -> bytes:
    fm = [f"title: {json.dumps(title)}", f"slug: {slug}", f"date: {date}", f"status: {status}", f"tags: {json.dumps(list(tags))}"]
    if canonical:
        fm.append(f"canonical: {canonical}")
    body = f"""---
{chr(10).join(fm)}
---
# {title}
> Dek of {slug}: short & sharp

**Meta:** type: event · date: {date[:10]} · 2 takes · 2 lenses · 2 regions

## Summary

Summary of {slug} with [a link](https://example.com/{slug}?a=1&b=2).

## Why it matters

Because {slug} matters.

## What to watch

- First thing for {slug}.
- Second thing.

## Regional takes

### Wire services
- **Reuters** (United Kingdom, en) — Straight account of {slug}.
  > "A quote about {slug}."
  Source: https://www.reuters.com/{slug}

### Regional press
- **Le Monde** (France, fr) — Regional angle.
  Source: https://www.lemonde.fr/{slug}

## Across the graph
- Entities: {entities}
"""
    return body.encode("utf-8")


def story(
    slug: str,
    title: str,
    published: dt.datetime,
    updated: dt.datetime | None = None,
    **kw: Any,
) -> FeedStory:
    brief = parse_brief(brief_text(slug, title, date=published.isoformat(), **kw), f"briefs/{slug}.md", base_url="https://rbtfl.xyz/")
    return FeedStory(brief, published, updated or published)


def t(day: int, hour: int = 9) -> dt.datetime:
    return dt.datetime(2026, 6, day, hour, 0, tzinfo=UTC)


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    return make_cfg(tmp_path)


@pytest.fixture
def stories() -> list[FeedStory]:
    return [
        story("alpha-story", "Alpha: one & two", t(20), t(22, 15), tags=("AI", "Policy")),
        story("beta-story", "Beta <quoted> \"story\"", t(21), canonical="https://rbtfl.xyz/en/n/beta-story", tags=("policy",)),
        story("gamma-story", "Gamma – ümlauts, 東京", t(19), tags=("markets",), entities="Tokyo Stock Exchange"),
        story("draft-story", "Never published", t(23), status="draft", tags=("ai",)),
    ]


def html_norm(fragment: str) -> bytes:
    """HTML in a canonical form (feedparser's sanitiser reorders attributes
    and trims whitespace, neither of which changes the content)."""
    root = lxml.html.fragment_fromstring(fragment.strip(), create_parent="div")
    out: bytes = etree.tostring(root, method="c14n")
    return out


def plain(detail: Any) -> str:
    """feedparser's value as plain text, whatever type the feed declared
    (text that looks like HTML goes out as escaped type="html")."""
    value = str(detail.value)
    return html.unescape(value) if detail.type == "text/html" else value


def instant(parsed: Any) -> dt.datetime:
    """feedparser's UTC struct_time as an aware datetime."""
    return dt.datetime.fromtimestamp(calendar.timegm(parsed), UTC)


def parse(data: bytes) -> Any:
    parsed = feedparser.parse(data)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    return parsed


def test_every_entry_field_round_trips_in_atom_and_rss(cfg: Config, stories: list[FeedStory]) -> None:
    out = render_feeds(stories, cfg)
    expected = [s for s in sorted(stories, key=lambda s: s.published, reverse=True) if not s.brief.is_draft]
    for fmt in ("atom", "rss"):
        feed = parse(out[f"feed.{fmt}"])
        assert feed.version == ("atom10" if fmt == "atom" else "rss20")
        assert [e.id for e in feed.entries] == [entry_id(s.brief, s.published, cfg) for s in expected]
        for entry, st in zip(feed.entries, expected, strict=True):
            brief = st.brief
            assert plain(entry.title_detail) == brief.title, fmt
            assert entry.link == (brief.canonical or BASE + f"issues/{brief.slug}.html")
            # feedparser normalises to UTC struct_time: compare instants.
            assert instant(entry.published_parsed) == st.published
            if fmt == "atom":
                assert instant(entry.updated_parsed) == st.updated
            assert [c.term for c in entry.tags] == categories(brief)
            # RSS description is HTML (escaped once more); Atom summary is text.
            assert (entry.summary if fmt == "atom" else html.unescape(entry.summary)) == brief.dek
            content = entry.content[0]
            assert content.type == "text/html"
            assert html_norm(content.value) == html_norm(entry_html(brief, cfg))
            assert entry.author == "The Desk"
        if fmt == "rss":
            assert all(e.guidislink is False for e in feed.entries)


def test_json_feed_round_trips_and_has_required_fields(cfg: Config, stories: list[FeedStory]) -> None:
    out = render_feeds(stories, cfg)
    doc = json.loads(out["feed.json"])
    assert doc["version"] == "https://jsonfeed.org/version/1.1"
    assert doc["title"] == "Briefs & <Co>"
    assert doc["feed_url"] == BASE + "feed.json" and doc["home_page_url"] == BASE
    assert doc["language"] == "en"
    expected = [s for s in sorted(stories, key=lambda s: s.published, reverse=True) if not s.brief.is_draft]
    assert len(doc["items"]) == len(expected)
    for item, st in zip(doc["items"], expected, strict=True):
        assert isinstance(item["id"], str) and item["id"] == entry_id(st.brief, st.published, cfg)
        assert item["title"] == st.brief.title
        assert item["content_html"] == entry_html(st.brief, cfg)
        assert dt.datetime.fromisoformat(item["date_published"]) == st.published
        assert dt.datetime.fromisoformat(item["date_modified"]) == st.updated
        assert item["tags"] == categories(st.brief)
        assert item["authors"] == [{"name": "The Desk"}]
    # Same ids, titles and links as the XML feeds.
    atom = parse(out["feed.atom"])
    assert [(i["id"], i["title"], i["url"]) for i in doc["items"]] == [(e.id, plain(e.title_detail), e.link) for e in atom.entries]


def test_feed_level_fields(cfg: Config, stories: list[FeedStory]) -> None:
    out = render_feeds(stories, cfg)
    newest_update = max(s.updated for s in stories if not s.brief.is_draft)
    for fmt in ("atom", "rss"):
        feed = parse(out[f"feed.{fmt}"]).feed
        assert plain(feed.title_detail) == "Briefs & <Co>"
        assert plain(feed.subtitle_detail) == "How the world covered it"
        assert feed.language == "en"
        assert feed.link == BASE
        rels = {(link.rel, link.href) for link in feed.links}
        assert ("self", BASE + f"feed.{fmt}") in rels
        assert instant(feed.updated_parsed) == newest_update
        assert "publisher" in feed.generator


def test_published_uses_site_time_zone_for_bare_dates(cfg: Config) -> None:
    brief = parse_brief(brief_text("bare-date", "Bare date"), "briefs/bare.md")
    published = brief.published_at(cfg.site.tz)  # midnight in Berlin
    out = render_feeds([FeedStory(brief, published, published)], cfg)
    assert b"<published>2026-06-24T00:00:00+02:00</published>" in out["feed.atom"]
    assert b"<pubDate>Wed, 24 Jun 2026 00:00:00 +0200</pubDate>" in out["feed.rss"]
    assert entry_id(brief, published, cfg) == "tag:briefs.example.org,2026-06-24:bare-date"


def test_drafts_never_published(cfg: Config, stories: list[FeedStory]) -> None:
    out = render_feeds(stories, cfg)
    for path, data in out.items():
        assert b"draft-story" not in data, path
        assert b"Never published" not in data, path
    # The draft is the newest story: feed updated must not come from it.
    assert b"2026-06-23" not in out["feed.atom"]


def test_newest_first_ties_by_slug_and_size_limit(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, size=3)
    same = t(10)
    items = [story(f"s-{c}", f"Story {c}", same) for c in "adbc"] + [story("older", "Older", t(9))]
    out = render_feeds(items, cfg)
    ids = [e.id.rsplit(":", 1)[1] for e in parse(out["feed.atom"]).entries]
    assert ids == ["s-d", "s-c", "s-b"]
    # Input order does not matter.
    assert render_feeds(list(reversed(items)), cfg) == out


def test_id_is_stable_across_rename_and_edit(cfg: Config) -> None:
    a = parse_brief(brief_text("stable", "First title"), "briefs/one.md")
    b = parse_brief(brief_text("stable", "Edited title, new text"), "briefs/renamed-file.md")
    when = t(1)
    assert entry_id(a, when, cfg) == entry_id(b, when, cfg)
    assert a.content_hash != b.content_hash


def test_updated_comes_from_the_story_not_the_clock(cfg: Config, stories: list[FeedStory]) -> None:
    out = render_feeds(stories, cfg)
    entry = parse(out["feed.atom"]).entries
    alpha = next(e for e in entry if e.id.endswith(":alpha-story"))
    assert alpha.updated == "2026-06-22T17:00:00+02:00"  # t(22, 15) UTC in Berlin
    # Empty feed: a fixed updated, never now().
    empty = render_feeds([], cfg)
    assert b"<updated>1970-01-01T00:00:00+00:00</updated>" in empty["feed.atom"]
    assert parse(empty["feed.atom"]).entries == []


def test_tag_and_entity_feeds(cfg: Config, stories: list[FeedStory]) -> None:
    out = render_feeds(stories, cfg)
    tag_dirs = sorted({p.split("/")[1] for p in out if p.startswith("tags/")})
    assert tag_dirs == ["ai", "alibaba-qwen", "anthropic", "markets", "policy", "tokyo-stock-exchange"]
    for slug in tag_dirs:
        assert {f"tags/{slug}/feed.{f}" for f in FORMATS} <= set(out)
    policy = parse(out["tags/policy/feed.atom"])
    assert [e.id.rsplit(":", 1)[1] for e in policy.entries] == ["beta-story", "alpha-story"]
    # The newest story's spelling names the feed.
    assert plain(policy.feed.title_detail) == "Briefs & <Co>: policy"
    assert any(link.rel == "self" and link.href == BASE + "tags/policy/feed.atom" for link in policy.feed.links)
    # The draft's tag alone makes no feed entry.
    ai = parse(out["tags/ai/feed.atom"])
    assert [e.id.rsplit(":", 1)[1] for e in ai.entries] == ["alpha-story"]


def test_tag_feeds_can_be_disabled_and_selected(tmp_path: Path, stories: list[FeedStory]) -> None:
    off = render_feeds(stories, make_cfg(tmp_path, tag_feeds=False))
    assert sorted(off) == ["feed.atom", "feed.json", "feed.rss"]
    cfg = make_cfg(tmp_path)
    full = render_feeds(stories, cfg)
    some = render_feeds(stories, cfg, only={"policy"})
    assert sorted(some) == ["tags/policy/feed.atom", "tags/policy/feed.json", "tags/policy/feed.rss"]
    assert all(full[k] == v for k, v in some.items())
    main = render_feeds(stories, cfg, only={MAIN_FEED})
    assert sorted(main) == ["feed.atom", "feed.json", "feed.rss"]


def test_entry_html_rendered_once_and_only_for_feeds_that_use_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 400 stories over 200 tags render without per-tag rescans: each story's
    # entry HTML is rendered at most once however many feeds it is in.
    cfg = make_cfg(tmp_path, size=5)
    items = [
        story(f"s-{i}", f"Story {i}", t(1 + i % 28, i % 24), tags=(f"tag-{i % 200}", "common"))
        for i in range(400)
    ]
    calls = 0
    import publisher.render.feed_entries as feeds

    real = feeds.entry_html

    def counting(brief: Brief, c: Config) -> str:
        nonlocal calls
        calls += 1
        return real(brief, c)

    monkeypatch.setattr(feeds, "entry_html", counting)
    out = render_feeds(items, cfg, only={MAIN_FEED, "common"})
    assert len(parse(out["tags/common/feed.atom"]).entries) == 5
    assert calls <= 5  # main and "common" share the same newest five


def test_hub_icon_logo_from_config(tmp_path: Path, stories: list[FeedStory]) -> None:
    cfg = config.from_mapping(
        {
            "site": {"base_url": BASE, "icon": "https://briefs.example.org/icon.png", "logo": "https://briefs.example.org/logo.png", "author_email": "desk@example.org"},
            "feeds": {"hub": "https://hub.example.net/"},
        },
        base=tmp_path,
    )
    out = render_feeds(stories, cfg)
    for fmt in ("atom", "rss"):
        feed = parse(out[f"feed.{fmt}"]).feed
        assert ("hub", "https://hub.example.net/") in {(link.rel, link.href) for link in feed.links}, fmt
        assert feed.link == BASE, fmt
    atom = parse(out["feed.atom"]).feed
    assert atom.icon == "https://briefs.example.org/icon.png"
    assert atom.logo == "https://briefs.example.org/logo.png"
    rss_entry = parse(out["feed.rss"]).entries[0]
    assert rss_entry.author == "desk@example.org (Publisher Desk)"
    doc = json.loads(out["feed.json"])
    assert doc["hubs"] == [{"type": "WebSub", "url": "https://hub.example.net/"}]
    assert doc["icon"] == "https://briefs.example.org/icon.png"


def test_naive_datetimes_are_rejected(cfg: Config, stories: list[FeedStory]) -> None:
    from publisher.core.errors import RenderError

    naive = dataclasses.replace(stories[0], published=dt.datetime(2026, 1, 1))
    with pytest.raises(RenderError, match="timezone-aware"):
        render_feeds([naive], cfg)


def test_rss_title_uses_hex_character_references(cfg: Config, stories: list[FeedStory]) -> None:
    rss = render_feeds(stories, cfg)["feed.rss"]
    assert b"<title>Briefs &#x26; &#x3C;Co&gt;</title>" in rss
    assert b"<title>Beta &#x3C;quoted&gt; \"story\"</title>" in rss
    assert b"&amp;" not in b"".join(line for line in rss.splitlines() if b"<title>" in line)
    lens = render_feeds([story("lensy", "Lensy", t(3), tags=("R&D <lab>",))], cfg)["feed.rss"]
    assert b"<category>R&#x26;D &#x3C;lab&gt;</category>" in lens
    assert [c.term for c in parse(lens).entries[0].tags][0] == "R&D <lab>"


def test_entry_html_has_every_part_and_only_absolute_links(cfg: Config, stories: list[FeedStory]) -> None:
    html = entry_html(stories[0].brief, cfg)
    for part in ("Dek of alpha-story: short &amp; sharp", "<h2>Summary</h2>", "<h2>Why it matters</h2>", "<h2>What to watch</h2>", "<h2>How the world covered it</h2>", "Wire services", "Reuters", ", United Kingdom — ", "A quote about alpha-story."):
        assert part in html, part
    assert "<table" not in html and "<li><a href=" in html  # takes as a list: terminal readers show them whole
    import re

    for href in re.findall(r'href="([^"]*)"', html):
        assert href.startswith(("https://", "http://")), href


def test_output_is_deterministic(cfg: Config, stories: list[FeedStory]) -> None:
    assert render_feeds(stories, cfg) == render_feeds(list(reversed(stories)), cfg)


def golden_stories() -> list[FeedStory]:
    ref = parse_brief((DATA / "reference.txt").read_bytes(), "tests/data/reference.txt")
    non_latin = parse_brief((DATA / "briefs" / "non_latin.md").read_bytes(), "tests/data/briefs/non_latin.md")
    when = dt.datetime(2026, 6, 24, 8, 30, tzinfo=UTC)
    return [
        FeedStory(ref, when, when + dt.timedelta(hours=5)),
        FeedStory(non_latin, dt.datetime(2026, 9, 10, 6, 0, tzinfo=UTC), dt.datetime(2026, 9, 10, 6, 0, tzinfo=UTC)),
        story("alpha-story", "Alpha: one & two", t(20), t(22, 15), tags=("AI", "Policy")),
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_golden_feeds(tmp_path: Path, fmt: str) -> None:
    cfg = make_cfg(tmp_path, tag_feeds=False)
    out = render_feeds(golden_stories(), cfg)
    assert_golden(GOLDEN / "feeds" / f"feed.{fmt}", out[f"feed.{fmt}"])


def test_rfc5005_archive_pages(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, archive=True, size=3, archive_page_size=2, tag_feeds=False)
    items = [story(f"s-{i:02d}", f"Story {i}", dt.datetime(2026, 1, 1 + i, 12, tzinfo=UTC)) for i in range(9)]

    def links(out: dict[str, bytes], path: str) -> dict[str, str]:
        return {link.rel: link.href for link in parse(out[path]).feed.links if link.rel != "alternate"}

    def slugs(out: dict[str, bytes], path: str) -> list[str]:
        return [e.id.rsplit(":", 1)[1] for e in parse(out[path]).entries]

    def walk(out: dict[str, bytes]) -> list[str]:
        """Every story a reader back-fills from the feed via prev-archive."""
        seen = slugs(out, "feed.atom")
        page = links(out, "feed.atom").get("prev-archive", "")
        while page:
            path = page.removeprefix(BASE)
            assert b"<fh:archive/>" in out[path]
            assert links(out, path)["current"] == BASE + "feed.atom"
            assert links(out, path)["self"] == page
            seen += slugs(out, path)
            page = links(out, path).get("prev-archive", "")
        return seen

    pages: dict[str, list[tuple[str, str]]] = {}
    for n in range(6, 10):  # stories arrive one at a time
        out = render_feeds(items[:n], cfg)
        # Every story exactly once, in order, across the feed and its pages.
        assert walk(out) == [f"s-{i:02d}" for i in reversed(range(n))], n
        for path, data in out.items():
            if path.startswith("archive/"):
                # Only full pages are published, and their entries never
                # change (a next-archive link may be added later).
                entries = [(e.id, e.updated) for e in parse(data).entries]
                assert len(entries) == 2
                assert pages.setdefault(path, entries) == entries, (n, path)
        # The main feed: the newest three, plus at most one waiting for a page.
        main = slugs(out, "feed.atom")
        assert main[:3] == [f"s-{i:02d}" for i in (n - 1, n - 2, n - 3)] and len(main) in (3, 4)
    assert sorted(pages) == ["archive/1.atom", "archive/2.atom", "archive/3.atom"]
    assert links(out, "archive/1.atom")["next-archive"] == BASE + "archive/2.atom"
    # A page bigger than the feed leaves no gap either.
    wide = make_cfg(tmp_path, archive=True, size=1, archive_page_size=3, tag_feeds=False)
    out = render_feeds(items[:5], wide)
    assert walk(out) == ["s-04", "s-03", "s-02", "s-01", "s-00"]
    # Archives are off by default.
    assert not any(p.startswith("archive/") for p in render_feeds(items, make_cfg(tmp_path, size=3)))


def test_feed_entries_cap_takes_like_emails() -> None:
    ref = parse_brief((DATA / "reference.txt").read_bytes(), "reference.txt")
    assert ref.take_count == 17
    def takes(html: str) -> int:
        covered = html.split("How the world covered it", 1)[1]
        return covered.count("<li>")

    full = entry_html(ref, build_config())
    assert takes(full) == 17 and "more</a>" not in full
    capped = entry_html(ref, build_config(feeds={"max_takes": 5}))
    assert takes(capped) == 5
    url = f"http://127.0.0.1:8000/issues/{ref.slug}.html"
    assert f'<p><a href="{url}">and 12 more</a></p>' in capped
    # Lenses whose takes are all cut leave no empty group behind.
    lists = re.findall(r"<ul>(.*?)</ul>", capped.split("How the world covered it", 1)[1], re.S)
    assert lists and all("<li>" in items for items in lists)
    assert len(lists) < len([lens for lens in ref.lenses if lens.takes])
