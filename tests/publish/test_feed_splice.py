"""Feeds spliced from kept entry parts are the full render, byte for byte.

Random sequences of adds, edits (title, text, tags, date) and deletes go
through ``sync`` one file at a time, with a restart (a fresh Pipeline over
the same state, so parts come from ``state/feed-entries``) now and then.
After each sequence every feed file must equal, byte for byte, what a full
build of the same briefs into an empty store and an empty public/ writes,
and feedparser must read each Atom and RSS one without complaint (JSON:
json).
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

import feedparser
import pytest

from publisher.briefs import parse as parse_module
from publisher.core.config import Config
from publisher.publish import briefcache, sitepages
from publisher.publish.pipeline import Pipeline
from publisher.store import engine as store
from tests.support.project import build_config

TAGS = ("ai", "chips", "policy", "markets", "Energy")
UTC = dt.timezone.utc


def brief(slug: str, title: str, *, day: int, hour: int, tags: list[str], summary: str, version: int) -> str:
    # An explicit 'updated' (the full build cannot know when an edit happened): the same in both stores.
    updated = dt.datetime(2026, 7, 1, tzinfo=UTC) + dt.timedelta(minutes=version)
    date = dt.datetime(2026, 6, day, hour, tzinfo=UTC)
    return (
        f"---\nslug: {slug}\ndate: {date.isoformat()}\nupdated: {updated.isoformat()}\ntags: [{', '.join(tags)}]\n---\n"
        f"# {title}\n> Dek of {title} & more\n\n**Meta:** type: test · date: {date.date()} · 1 take · 1 lens · 1 region\n\n"
        f"## Summary\n\n{summary}\n\n## Why it matters\n\nIt matters.\n\n## What to watch\n\n- Next steps.\n\n"
        "## Regional takes\n\n### Wire services\n- **Reuters** (United Kingdom, en) — A take <b>bold</b>.\n"
        "  > \"A quote.\"\n  Source: https://www.reuters.com/x\n"
    )


def config(tmp: Path, briefs: Path) -> Config:
    cfg = build_config(tmp, create=True, feeds={"size": 4}, schedule={"quiet_period": 0})
    return build_config(tmp, create=True, feeds={"size": 4}, schedule={"quiet_period": 0},
                        paths={"briefs": str(briefs), "public": str(cfg.paths.public), "state": str(cfg.paths.state), "templates": "no-overrides"})


def feed_files(public: Path) -> dict[str, bytes]:
    return {p.relative_to(public).as_posix(): p.read_bytes() for p in public.rglob("feed.*") if p.name != "feed.xsl"}


class Desk:
    """A briefs folder edited at random, one file per sync."""

    def __init__(self, folder: Path, rng: random.Random) -> None:
        self.folder, self.rng = folder, rng
        self.live: dict[str, tuple[str, int, int, list[str]]] = {}  # slug → title, day, hour, tags
        self.files: dict[str, str] = {}  # slug → file name (a slug renamed in front matter keeps its file)
        self.version = 0
        self.made = 0

    def write(self, slug: str) -> None:
        self.version += 1
        title, day, hour, tags = self.live[slug]
        text = brief(slug, title, day=day, hour=hour, tags=tags, summary=f"Text {self.version} of {slug}.", version=self.version)
        (self.folder / self.files.setdefault(slug, f"{slug}.md")).write_text(text, encoding="utf-8")

    def step(self, kind: str | None = None) -> str:
        rng = self.rng
        if kind is None:
            kinds = ["add", "add", "edit", "edit", "edit", "retitle", "retag", "redate", "reslug", "delete"]
            kind = rng.choice(kinds) if self.live else "add"
        if kind == "add":
            self.made += 1
            slug = f"story-{self.made}"
            self.live[slug] = (f"Story {self.made}", rng.randint(1, 28), rng.randint(0, 23), rng.sample(TAGS, rng.randint(0, 3)))
            self.write(slug)
            return slug
        slug = rng.choice(sorted(self.live))
        title, day, hour, tags = self.live[slug]
        if kind == "delete":
            del self.live[slug]
            (self.folder / self.files.pop(slug)).unlink()
            return slug
        if kind == "reslug":  # the old story is retired, a new one published from the same file
            self.made += 1
            new = f"story-{self.made}"
            self.live[new], self.files[new] = self.live.pop(slug), self.files.pop(slug)
            self.write(new)
            return new
        if kind == "retitle":
            title = f"{title} <{self.version}>"
        elif kind == "retag":
            tags = rng.sample(TAGS, rng.randint(0, 3))
        elif kind == "redate":
            day, hour = rng.randint(1, 28), rng.randint(0, 23)
        self.live[slug] = (title, day, hour, tags)
        self.write(slug)
        return slug


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_spliced_feeds_equal_a_full_build_byte_for_byte(tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sitepages, "ARCHIVE_PAGE", 3)  # pages fill and empty as stories come and go
    rng = random.Random(seed)
    briefs = tmp_path / "briefs"
    briefs.mkdir()
    cfg = config(tmp_path / "live", briefs)
    desk = Desk(briefs, rng)
    for _ in range(8):
        desk.step("add")
    pub = Pipeline(cfg, store.connect(cfg.store_url))
    pub.build_all(workers=1)
    for n in range(60):
        for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 4)):  # mostly one file a sync (an edit), sometimes a batch
            desk.step()
        assert not pub.sync().errors
        if rng.random() < 0.15:
            pub = Pipeline(cfg, store.connect(cfg.store_url))  # a restart: parts come from the state folder
    fresh = config(tmp_path / "fresh", briefs)
    Pipeline(fresh, store.connect(fresh.store_url)).build_all(workers=1)
    spliced, full = feed_files(cfg.paths.public), feed_files(fresh.paths.public)
    assert sorted(spliced) == sorted(full)
    for rel in sorted(full):
        assert spliced[rel] == full[rel], rel
        if rel.endswith(".json"):  # feedparser 6 reads no JSON Feed
            assert json.loads(spliced[rel])["version"] == "https://jsonfeed.org/version/1.1"
            continue
        parsed = feedparser.parse(spliced[rel])
        assert parsed.version and parsed.bozo == 0, (rel, parsed.get("bozo_exception"))
    assert len(feedparser.parse(full["feed.atom"]).entries) == min(4, len(desk.live))
    # The site's list pages, kept up to date story by story, are the full build's too.
    lists, whole = site_pages(cfg.paths.public), site_pages(fresh.paths.public)
    assert sorted(lists) == sorted(whole)
    assert all(lists[rel] == whole[rel] for rel in whole), [rel for rel in whole if lists[rel] != whole[rel]]


def site_pages(public: Path) -> dict[str, bytes]:
    return {p.relative_to(public).as_posix(): p.read_bytes() for p in public.rglob("*.html") if not p.name.startswith(".")}


def test_a_fresh_process_edits_the_newest_story_without_parsing_stored_briefs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    briefs = tmp_path / "briefs"
    briefs.mkdir()
    cfg = config(tmp_path / "live", briefs)
    desk = Desk(briefs, random.Random(7))
    for _ in range(30):
        desk.step("add")
    Pipeline(cfg, store.connect(cfg.store_url)).build_all(workers=1)
    pub = Pipeline(cfg, store.connect(cfg.store_url))
    pub.sync()  # what a starting service does first
    newest = max(desk.live, key=lambda s: (desk.live[s][1], desk.live[s][2], s))
    title, day, hour, tags = desk.live[newest]
    desk.live[newest] = (f"{title}, retitled", day, hour, ["ai", "chips"])  # its lists and tag feeds change too
    desk.write(newest)
    parsed: list[str] = []
    real = parse_module.parse_brief

    def counting(data: bytes, path: str, **kw: object) -> object:
        parsed.append(path)
        return real(data, path, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(briefcache, "parse_brief", counting)
    result = pub.sync([f"{newest}.md"])
    assert result.published == [newest] and {"feed.atom", "tags/ai/feed.atom", "index.html", "archive/index.html"} <= set(result.written)
    # The edited file is parsed once by the reader; no stored brief is parsed for its feeds or pages.
    assert parsed == []
