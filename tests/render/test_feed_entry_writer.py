"""The feed entry HTML written by feed_entries.write_entry equals feed/entry.html.j2's."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.briefs import parse_brief
from publisher.briefs.model import Brief
from publisher.core.config import Config
from publisher.core.errors import BriefError
from publisher.render import feed_entries
from publisher.render.coverage import capped, groups
from publisher.render.templating import builtin_dir, search_path
from tests.support.briefgen import brief_text
from tests.support.files import DATA, SAMPLES
from tests.support.project import build_config

BASE = "https://briefs.example.org/"
FILES = sorted((DATA / "briefs").iterdir()) + sorted(SAMPLES.iterdir())
CONFIGS = [build_config(site={"base_url": BASE}), build_config(site={"base_url": BASE}, feeds={"max_takes": 2})]


def jinja_entry(brief: Brief, cfg: Config) -> str:
    shown, hidden = capped(groups(brief), cfg.feeds.max_takes)
    template = feed_entries._entry_template(search_path(cfg.paths.templates))
    return feed_entries.clean(template.render(brief=brief, groups=shown, hidden=hidden, more_url=cfg.site.url(f"issues/{brief.slug}.html")))


def test_the_builtin_template_is_the_one_mirrored() -> None:
    """Fails when feed/entry.html.j2 changes: update write_entry to match, then ENTRY_SHA256
    (until then every entry goes through Jinja2)."""
    assert feed_entries._typed_entry(search_path(CONFIGS[0].paths.templates))


def test_an_override_goes_through_jinja(tmp_path: Path) -> None:
    (tmp_path / "feed").mkdir()
    source = (builtin_dir() / "feed" / "entry.html.j2").read_text(encoding="utf-8")
    (tmp_path / "feed" / "entry.html.j2").write_text(source + "<p>Overridden</p>\n", encoding="utf-8")
    cfg = build_config(site={"base_url": BASE}, paths={"templates": str(tmp_path)})
    assert not feed_entries._typed_entry(search_path(cfg.paths.templates))
    brief = parse_brief((DATA / "reference.txt").read_bytes(), "reference.txt", base_url=BASE)
    assert feed_entries.entry_html(brief, cfg).endswith("<p>Overridden</p>")


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_samples(path: Path) -> None:
    brief = parse_brief(path.read_bytes(), path.name, base_url=BASE)
    for cfg in CONFIGS:
        assert feed_entries.entry_html(brief, cfg) == jinja_entry(brief, cfg)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(brief_text(), st.sampled_from([0, 1]))
def test_generated_briefs(source: str, which: int) -> None:
    try:
        brief = parse_brief(source.encode("utf-8"), "gen.md", base_url=BASE)
    except BriefError:
        return
    assert feed_entries.entry_html(brief, CONFIGS[which]) == jinja_entry(brief, CONFIGS[which])
