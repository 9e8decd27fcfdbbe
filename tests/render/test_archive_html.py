"""An archive page written by render.archive_html equals what the Jinja2 site templates render."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.core.config import Config
from publisher.render import archive_html, site
from publisher.render.site import StoryItem
from publisher.render.templating import builtin_dir, mirrored, search_path
from tests.support.briefgen import line
from tests.support.mirrors import BASE, SITE_CONFIGS, through_jinja
from tests.support.project import build_config

CONFIGS = SITE_CONFIGS
OLDER, NEWER = "https://briefs.example.org/archive/1.html?a=1&b=2", "https://briefs.example.org/archive/"


def both(items: list[StoryItem], cfg: Config, number: int, older: str | None, newer: str | None) -> tuple[str, str]:
    typed = site.archive_page(items, cfg, number=number, older=older, newer=newer)
    with through_jinja(archive_html):
        jinja = site.archive_page(items, cfg, number=number, older=older, newer=newer)
    return typed, jinja


def _item(n: int, title: str, date: dt.date) -> StoryItem:
    return StoryItem(f"s-{n}", title, "", date, "", f"{BASE}issues/s-{n}.html?x=1&y=<{n}>")


ITEMS = [_item(n, title, dt.date(2026, 1 + n % 12, 1 + n % 28)) for n, title in
         enumerate(["Plain", "A & B <c> \"q\" 'x'", "עברית", "中文", "\u202eRTL override", "", "Same day"] * 3)]


def test_the_builtin_templates_are_the_ones_mirrored() -> None:
    """Fails when site/archive.html or site/base.html changes: update render/archive_html.py to
    match, then its SOURCES_SHA256 (until then every archive page goes through Jinja2)."""
    assert mirrored(search_path(CONFIGS[0].paths.templates), archive_html.TEMPLATES, archive_html.SOURCES_SHA256)


def test_an_override_goes_through_jinja(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    source = (builtin_dir() / "site" / "archive.html").read_text(encoding="utf-8")
    (tmp_path / "site" / "archive.html").write_text(source.replace("No stories yet.", "Nothing here yet."), encoding="utf-8")
    cfg = build_config(site={"base_url": BASE}, paths={"templates": str(tmp_path)})
    assert not mirrored(search_path(cfg.paths.templates), archive_html.TEMPLATES, archive_html.SOURCES_SHA256)
    assert "Nothing here yet." in site.archive_page([], cfg)


@pytest.mark.parametrize("cfg", CONFIGS, ids=["plain", "escaped-rtl-logo", "cjk-he", "no-subtitle"])
@pytest.mark.parametrize(("number", "older", "newer"), [(1, None, None), (1, None, NEWER), (2, OLDER, NEWER), (3, OLDER, None)],
                         ids=["only", "oldest", "middle", "newest"])
@pytest.mark.parametrize("count", [0, 1, len(ITEMS)], ids=["empty", "one", "many"])
def test_every_page_shape(cfg: Config, number: int, older: str | None, newer: str | None, count: int) -> None:
    typed, jinja = both(ITEMS[:count], cfg, number, older, newer)
    assert typed == jinja
    assert ("No stories yet." in typed) == (count == 0)
    assert ('rel="prev"' in typed) == bool(older) and ('rel="next"' in typed) == bool(newer)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(line, st.dates(dt.date(1990, 1, 1), dt.date(2100, 12, 31))), max_size=12),
       st.sampled_from(range(len(CONFIGS))), st.integers(1, 10**6), st.booleans(), st.booleans())
def test_generated_pages(stories: list[tuple[str, dt.date]], which: int, number: int, has_older: bool, has_newer: bool) -> None:
    items = [_item(n, title, date) for n, (title, date) in enumerate(stories)]
    typed, jinja = both(items, CONFIGS[which], number, OLDER if has_older else None, NEWER if has_newer else None)
    assert typed == jinja
