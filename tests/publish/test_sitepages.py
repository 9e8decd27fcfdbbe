"""The public site as `build` writes it and `serve` answers it, over real HTTP."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import lxml.html  # type: ignore[import-untyped]
import pytest

from publisher.core.config import Config
from publisher.publish.pipeline import Pipeline
from publisher.publish.sitepages import write_digest_page
from publisher.store import engine as store
from tests.support.live import LiveServer
from tests.support.project import build_config, brief_text
from tests.support.files import DATA

BASE = "https://news.example/"
PAGES = ["/", "/archive/", "/tags/", "/tags/anthropic/", "/issues/anthropic-alibaba-claude-distillation.html", "/issues/digest-2026-06-25.html", "/manage/"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Config, str]]:
    tmp = tmp_path_factory.mktemp("site")
    cfg = build_config(tmp, create=True, site={"base_url": BASE}, schedule={"digest_cron": ""})
    for sample in sorted((DATA / "samples").iterdir()):
        (cfg.paths.briefs / sample.name).write_bytes(sample.read_bytes())
    # A story the reference brief names as related, so its title shows.
    (cfg.paths.briefs / "chip.md").write_text(brief_text("chip-controls", "Chip controls tighten", tags="chips"))
    engine = store.connect(cfg.store_url)
    pipeline = Pipeline(cfg, engine)
    result = pipeline.build_all(workers=1)
    assert not result.errors
    with engine.connect() as conn:
        briefs = [pipeline.briefs.get(conn, s) for s in ("anthropic-alibaba-claude-distillation", "chip-controls")]
    write_digest_page(briefs, cfg, label="25 June 2026", name="digest-2026-06-25")
    srv = LiveServer(cfg, engine, pipeline)
    srv.start()
    try:
        yield cfg, srv.url
    finally:
        srv.stop()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, ""


@pytest.mark.parametrize("path", PAGES)
def test_page_answers_with_autodiscovery_and_links_resolve(served: tuple[Config, str], path: str) -> None:
    _cfg, url = served
    status, body = get(url + path)
    assert status == 200, path
    doc = lxml.html.fromstring(body)
    alternates = {link.get("type"): link.get("href") for link in doc.xpath("//head/link[@rel='alternate']")}
    assert set(alternates) == {"application/atom+xml", "application/rss+xml", "application/feed+json"}, path
    internal = sorted({h for h in doc.xpath("//@href | //form/@action") if h.startswith(BASE)} | set(alternates.values()))
    assert internal
    for href in internal:
        target = url + "/" + href[len(BASE):]
        code, _ = get(target.split("#")[0])
        assert code == 200, f"{path}: {href} answers {code}"
    assert not doc.xpath("//script")


def test_story_page_is_the_site_page_not_the_email(served: tuple[Config, str]) -> None:
    _cfg, url = served
    _, body = get(url + "/issues/anthropic-alibaba-claude-distillation.html")
    text = lxml.html.fromstring(body).text_content()
    assert "Unsubscribe" not in text and "You get this email" not in text and "unsubscribe" not in body
    doc = lxml.html.fromstring(body)
    # The full table: all 17 takes, grouped by lens; related by title; tags linked.
    assert len(doc.xpath("//table[@class='cov']/tbody/tr")) == 17
    assert "UNLABELLED" not in text.upper().replace("ALSO COVERED", "")
    assert doc.xpath("//a[.='Chip controls tighten']/@href") == [BASE + "issues/chip-controls.html"]
    assert "anthropic-series-h-ipo-2026" not in body
    assert doc.xpath("//a[@class='chip'][.='Alibaba Qwen']/@href") == [BASE + "tags/alibaba-qwen/"]


def test_tag_page_links_its_feeds(served: tuple[Config, str]) -> None:
    _cfg, url = served
    _, body = get(url + "/tags/anthropic/")
    hrefs = lxml.html.fromstring(body).xpath("//main//a/@href")
    assert BASE + "tags/anthropic/feed.atom" in hrefs and BASE + "tags/anthropic/feed.json" in hrefs


def test_feed_points_at_the_stylesheet(served: tuple[Config, str]) -> None:
    cfg, url = served
    head = (cfg.paths.public / "feed.atom").read_bytes()[:300]
    assert b'<?xml-stylesheet type="text/xsl" href="https://news.example/feed.xsl"?>' in head
    status, xsl = get(url + "/feed.xsl")
    assert status == 200 and "subscribe by email" in xsl and re.search(r"xsl:stylesheet", xsl)


def test_sync_keeps_the_site_in_step(tmp_path: Path) -> None:
    cfg = build_config(tmp_path, create=True, site={"base_url": BASE}, schedule={"quiet_period": 0})
    pipeline = Pipeline(cfg, store.connect(cfg.store_url))
    (cfg.paths.briefs / "a.md").write_text(brief_text("story-a", "Story A", tags="alpha"))
    result = pipeline.sync()
    assert {"index.html", "archive/index.html", "tags/index.html", "tags/alpha/index.html", "issues/story-a.html"} <= set(result.written)
    assert "Story A" in (cfg.paths.public / "index.html").read_text()
    (cfg.paths.briefs / "a.md").unlink()
    result = pipeline.sync()
    assert "Story A" not in (cfg.paths.public / "index.html").read_text()
    assert not (cfg.paths.public / "tags" / "alpha" / "index.html").exists()


def test_an_edit_that_keeps_the_lists_updates_home_and_tag_pages_and_a_retitle_the_archive(tmp_path: Path) -> None:
    cfg = build_config(tmp_path, create=True, site={"base_url": BASE}, schedule={"quiet_period": 0})
    pipeline = Pipeline(cfg, store.connect(cfg.store_url))
    for name in ("a", "b"):
        (cfg.paths.briefs / f"{name}.md").write_text(brief_text(f"story-{name}", f"Story {name.upper()}", tags="alpha"))
    pipeline.sync()
    path = cfg.paths.briefs / "a.md"
    path.write_text(path.read_text().replace("> Dek of Story A", "> A new dek"))
    result = pipeline.sync()  # the lists are as they were: home and the tag page only
    assert result.published == ["story-a"]
    assert {"index.html", "tags/alpha/index.html"} <= set(result.written)
    assert "archive/index.html" not in result.written and "tags/index.html" not in result.written
    assert "A new dek" in (cfg.paths.public / "index.html").read_text()
    assert "A new dek" in (cfg.paths.public / "tags" / "alpha" / "index.html").read_text()
    path.write_text(path.read_text().replace("# Story A", "# Story A, retitled"))
    result = pipeline.sync()
    assert "archive/index.html" in result.written
    assert "Story A, retitled" in (cfg.paths.public / "archive" / "index.html").read_text()
    path.write_text(path.read_text().replace("tags: [alpha]", "tags: [beta]"))
    result = pipeline.sync()
    assert "tags/index.html" in result.written and "tags/beta/index.html" in result.written
    assert not (cfg.paths.public / "tags" / "alpha" / "index.html").read_text().count("Story A, retitled")


def _archive_links(cfg: Config, rel: str) -> tuple[list[str], dict[str, str]]:
    doc = lxml.html.fromstring((cfg.paths.public / rel).read_text())
    titles = [a.text_content() for a in doc.xpath("//main//h3/a")]
    rels = {link.get("rel"): link.get("href") for link in doc.xpath("//head/link[@rel='prev' or @rel='next']")}
    return titles, rels


def test_the_archive_is_paginated_oldest_first_so_a_new_story_rewrites_only_the_newest_page(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from publisher.publish import sitepages

    monkeypatch.setattr(sitepages, "ARCHIVE_PAGE", 3)
    cfg = build_config(tmp_path, create=True, site={"base_url": BASE}, schedule={"quiet_period": 0})
    pipeline = Pipeline(cfg, store.connect(cfg.store_url))

    def add(n: int) -> list[str]:
        (cfg.paths.briefs / f"s{n}.md").write_text(brief_text(f"story-{n}", f"Story {n}", date=f"2026-10-{n:02d}"))
        result = pipeline.sync()
        assert result.published == [f"story-{n}"]
        return [w for w in result.written if w.startswith("archive/")]

    for n in range(1, 8):
        add(n)
    # Pages 1 and 2 hold the six oldest, at addresses that will not move; archive/ is page 3.
    assert _archive_links(cfg, "archive/1.html") == (["Story 3", "Story 2", "Story 1"], {"next": BASE + "archive/2.html"})
    assert _archive_links(cfg, "archive/2.html") == (["Story 6", "Story 5", "Story 4"],
                                                     {"prev": BASE + "archive/1.html", "next": BASE + "archive/"})
    assert _archive_links(cfg, "archive/index.html") == (["Story 7"], {"prev": BASE + "archive/2.html"})
    assert not (cfg.paths.public / "archive" / "3.html").exists()
    before = {n: (cfg.paths.public / "archive" / f"{n}.html").stat().st_mtime_ns for n in (1, 2)}
    assert add(8) == ["archive/index.html"]  # the newest page only
    assert add(9) == ["archive/index.html"]
    # Page 3 filled: the next story moves it to its own address, and page 2 links to it.
    assert sorted(add(10)) == ["archive/2.html", "archive/3.html", "archive/index.html"]
    assert _archive_links(cfg, "archive/3.html") == (["Story 9", "Story 8", "Story 7"],
                                                     {"prev": BASE + "archive/2.html", "next": BASE + "archive/"})
    assert _archive_links(cfg, "archive/index.html") == (["Story 10"], {"prev": BASE + "archive/3.html"})
    assert (cfg.paths.public / "archive" / "1.html").stat().st_mtime_ns == before[1]
    # Every story on exactly one page; a fresh process writes the same pages (nothing to rewrite).
    pages = ["archive/1.html", "archive/2.html", "archive/3.html", "archive/index.html"]
    assert sorted(t for rel in pages for t in _archive_links(cfg, rel)[0]) == sorted(f"Story {n}" for n in range(1, 11))
    fresh = Pipeline(cfg, store.connect(cfg.store_url))
    (cfg.paths.briefs / "s10.md").unlink()
    result = fresh.sync()
    assert result.removed == ["story-10"]
    # Back to three pages: page 3 is the newest again and lives at archive/ only; page 2 links there.
    assert sorted(w for w in result.written if w.startswith("archive/")) == ["archive/2.html", "archive/3.html", "archive/index.html"]
    assert not (cfg.paths.public / "archive" / "3.html").exists()
    assert _archive_links(cfg, "archive/2.html")[1] == {"prev": BASE + "archive/1.html", "next": BASE + "archive/"}
    assert _archive_links(cfg, "archive/index.html") == (["Story 9", "Story 8", "Story 7"], {"prev": BASE + "archive/2.html"})


def test_a_changed_site_template_reaches_every_list_page_however_their_inputs_were_kept(tmp_path: Path) -> None:
    cfg = build_config(tmp_path, create=True, site={"base_url": BASE}, schedule={"quiet_period": 0}, paths={"templates": "templates"})
    (cfg.paths.briefs / "a.md").write_text(brief_text("story-a", "Story A", tags="alpha"))
    Pipeline(cfg, store.connect(cfg.store_url)).build_all(workers=1)
    assert "Archive" in (cfg.paths.public / "archive" / "index.html").read_text()
    # The user overrides the archive template; a new process (the kept page inputs
    # are the same) must still render it, by a build as by the next change.
    (tmp_path / "templates" / "site").mkdir(parents=True)
    builtin = Path(__file__).resolve().parents[2] / "templates" / "site" / "archive.html"
    (tmp_path / "templates" / "site" / "archive.html").write_text(builtin.read_text().replace("<h1>Archive", "<h1>The whole archive"))
    from publisher.render import templating

    templating.search_path.cache_clear()
    Pipeline(cfg, store.connect(cfg.store_url)).build_all(workers=1)
    assert "The whole archive" in (cfg.paths.public / "archive" / "index.html").read_text()


def test_after_a_warm_up_a_fresh_process_edits_without_reading_every_story(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The first edit of a fresh process read every story's listing and checked
    # every archive page (at 30k stories: 650 ms); Pipeline.warm does that at start.
    from publisher.store import stories
    from tests.support.project import brief_text, make_project, pipeline_for

    cfg = make_project(tmp_path, schedule={"quiet_period": 0.0})
    for n in range(5):
        (cfg.paths.briefs / f"s{n}.md").write_text(brief_text(f"story-{n}", f"Story {n}", date=f"2026-11-2{n}"))
    pipeline_for(cfg).build_all(workers=1)
    fresh = pipeline_for(cfg)
    fresh.sync()
    fresh.warm()
    whole: list[object] = []
    original = stories.listed
    monkeypatch.setattr(stories, "listed", lambda conn, slugs=None: (whole.append(slugs) if slugs is None else None, original(conn, slugs))[1])
    (cfg.paths.briefs / "s4.md").write_text(brief_text("story-4", "Story 4", date="2026-11-24", summary="Edited."))
    result = fresh.sync(["s4.md"])
    assert result.published == ["story-4"] and "issues/story-4.html" in result.written
    assert whole == []
