"""The public site's pages (publisher.render.site): pure renders, checked as HTML."""

from __future__ import annotations

import dataclasses
import datetime as dt

import lxml.etree  # type: ignore[import-untyped]
import lxml.html  # type: ignore[import-untyped]

from publisher.render import site
from publisher.render.feed_entries import FeedStory
from publisher.render.feeds import render_feeds
from tests.render.test_newsletter import BASE, big_brief, digest_briefs, load, make_config


def test_story_page_has_full_table_and_no_email_footer() -> None:
    cfg = make_config()
    brief = big_brief(240, lenses=30, regions=12)
    doc = lxml.html.fromstring(site.story_page(brief, cfg))
    assert len(doc.xpath("//table[@class='cov']/tbody/tr")) == 240
    assert len(doc.xpath("//h3")) == 30
    assert "nsubscribe" not in doc.text_content()
    assert doc.xpath("//link[@rel='canonical']/@href") == [brief.canonical]


def test_story_page_takes_carry_lang_and_dir() -> None:
    doc = lxml.html.fromstring(site.story_page(load("non_latin.md"), make_config(site={"language": "ar"})))
    assert doc.get("dir") == "rtl"
    assert doc.xpath("//td[@lang='ar']/@dir") == ["rtl"]
    # No synthetic italics for Arabic, Hebrew, CJK quotes.
    for quote in doc.xpath("//blockquote"):
        assert "italic" not in (quote.get("style") or "")


def test_digest_page_from_briefs_and_label() -> None:
    cfg = make_config()
    draft = dataclasses.replace(load("minimal.md"), slug="draft-x", title="Unpublished draft", status="draft")
    doc = lxml.html.fromstring(site.digest_page([*digest_briefs(), draft], cfg, label="25 June 2026"))
    assert doc.xpath("//h1")[0].text_content() == "25 June 2026"
    assert [a.text_content() for a in doc.xpath("//ul[@class='stories']/li/h2/a")] == [b.title for b in digest_briefs()]
    assert "Unpublished draft" not in doc.text_content()
    assert doc.xpath("//ul[@class='stories']/li[1]//p[@lang='en']")  # takes shown, with their language


def test_archive_groups_by_month_newest_first() -> None:
    cfg = make_config()
    items = [site.StoryItem(f"s{n}", f"Story {n}", "", dt.date(2026, m, 1 + n), "", BASE + f"issues/s{n}.html") for n, m in ((1, 5), (2, 7), (3, 7))]
    doc = lxml.html.fromstring(site.archive_page(items, cfg))
    assert [h.text_content() for h in doc.xpath("//main//h2")] == ["July 2026", "May 2026"]
    assert [a.text_content() for a in doc.xpath("//main//h3/a")] == ["Story 3", "Story 2", "Story 1"]


def test_feed_xsl_turns_a_feed_into_a_readable_page() -> None:
    cfg = make_config()
    at = dt.datetime(2026, 6, 24, 9, 0, tzinfo=dt.timezone.utc)
    feeds = render_feeds([FeedStory(load("reference.txt"), at, at)], cfg)
    transform = lxml.etree.XSLT(lxml.etree.fromstring(site.feed_xsl(cfg).encode()))
    for name in ("feed.atom", "feed.rss"):
        page = str(transform(lxml.etree.fromstring(feeds[name])))
        doc = lxml.html.fromstring(page)
        assert "This is a web feed." in doc.text_content(), name
        assert doc.xpath("//a[.='subscribe by email']/@href") == [BASE + "subscribe"]
        assert doc.xpath("//li/a")[0].text_content() == load("reference.txt").title
