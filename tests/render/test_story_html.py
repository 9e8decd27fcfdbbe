"""The story's web page written by render.story_html equals what the Jinja2 site templates render."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.briefs import parse_brief
from publisher.briefs.model import Brief
from publisher.core.config import Config
from publisher.core.errors import BriefError
from publisher.render import site, story_html
from publisher.render.templating import builtin_dir, mirrored, search_path
from tests.support.briefgen import line
from tests.support.briefgen import brief_text
from tests.support.files import DATA, SAMPLES
from tests.support.mirrors import BASE, SITE_CONFIGS, through_jinja
from tests.support.project import build_config

FILES = sorted((DATA / "briefs").iterdir()) + sorted(SAMPLES.iterdir())
CONFIGS = SITE_CONFIGS
TAGS = st.lists(st.one_of(line, st.sampled_from(["Energy", "énergie", "A & B", "<b>", "עברית", "中文", "--", ""])), max_size=4)


def both(brief: Brief, cfg: Config, titles: dict[str, str] | None = None) -> tuple[str, str]:
    typed = site.story_page(brief, cfg, related_titles=titles)
    with through_jinja(story_html):
        jinja = site.story_page(brief, cfg, related_titles=titles)
    return typed, jinja


def test_the_builtin_templates_are_the_ones_mirrored() -> None:
    """Fails when site/story.html or site/base.html changes: update render/story_html.py to
    match, then its SOURCES_SHA256 (until then every story page goes through Jinja2)."""
    assert mirrored(search_path(CONFIGS[0].paths.templates), story_html.TEMPLATES, story_html.SOURCES_SHA256)


def test_an_override_goes_through_jinja(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    source = (builtin_dir() / "site" / "base.html").read_text(encoding="utf-8")
    (tmp_path / "site" / "base.html").write_text(source.replace(">Archive</a>", ">Past stories</a>"), encoding="utf-8")
    cfg = build_config(site={"base_url": BASE}, paths={"templates": str(tmp_path)})
    assert not mirrored(search_path(cfg.paths.templates), story_html.TEMPLATES, story_html.SOURCES_SHA256)
    brief = parse_brief((DATA / "reference.txt").read_bytes(), "reference.txt", base_url=BASE)
    page = site.story_page(brief, cfg)
    assert ">Past stories</a>" in page and ">Archive</a>" not in page


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_samples(path: Path) -> None:
    brief = parse_brief(path.read_bytes(), path.name, base_url=BASE)
    for cfg in CONFIGS:
        for titles in (None, {slug: f"<{slug}> & co" for slug in brief.related}):
            typed, jinja = both(brief, cfg, titles)
            assert typed == jinja


def test_the_reference_page_has_every_part() -> None:
    """The samples above compare pages that have what the writer's branches write."""
    brief = parse_brief((DATA / "reference.txt").read_bytes(), "reference.txt", base_url=BASE)
    brief = dataclasses.replace(brief, tags=("Energy & climate", "<b>"))
    page, jinja = both(brief, CONFIGS[1], {slug: "A 'related' story" for slug in brief.related})
    assert page == jinja
    for part in ('<img src="https://briefs.example.org/l.png?a=1&amp;b=2"', "<h2>Related stories</h2>", "<h2>Tags</h2>",
                 "Energy &amp; climate", "&lt;b&gt;", "Read the original brief", 'href="https://example.org/news/tags/',
                 '<p class="regions">', '<span class="chip">', "<blockquote", '<span class="muted">Linked coverage</span>'):
        assert part in page, part


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(brief_text(), st.sampled_from(range(len(CONFIGS))), st.sampled_from([0, 1, 6]), TAGS)
def test_generated_briefs(source: str, which: int, known: int, tags: list[str]) -> None:
    try:
        brief = parse_brief(source.encode("utf-8"), "gen.md", base_url=BASE)
    except BriefError:
        return
    brief = dataclasses.replace(brief, tags=tuple(tags))
    titles = {slug: f"Related <{slug}> & 'co' \u202e" for slug in brief.related[:known]}
    typed, jinja = both(brief, CONFIGS[which], titles)
    assert typed == jinja
