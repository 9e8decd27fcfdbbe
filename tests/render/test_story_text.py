"""The story's plain text written by render.story_text equals the Jinja2 template's."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.briefs import parse_brief
from publisher.briefs.model import Brief
from publisher.core.config import Config
from publisher.core.errors import BriefError, RenderError
from publisher.render import email, story_text
from publisher.render.email import render_story
from publisher.render.templating import builtin_dir
from tests.support.briefgen import brief_text
from tests.support.files import DATA, SAMPLES
from tests.support.project import build_config

BASE = "https://briefs.example.org/"
FILES = sorted((DATA / "briefs").iterdir()) + sorted(SAMPLES.iterdir())
CONFIGS = [
    build_config(site={"title": "World Briefs", "base_url": BASE}),
    build_config(site={"title": "A long site title " * 8, "base_url": BASE, "language": "he"},
                 email={"sender_name": "Desk", "postal_address": "Elsewhere, 1 Long Road " * 6}),
]


def jinja_text(brief: Brief, cfg: Config, titles: dict[str, str] | None = None) -> str:
    # The module's digest, not email._typed_text: compiled (publisher.native), email calls its own functions directly.
    saved = story_text.SOURCES_SHA256
    story_text.SOURCES_SHA256 = "not the built-in templates"
    try:
        return render_story(brief, cfg, related_titles=titles).text
    finally:
        story_text.SOURCES_SHA256 = saved


def test_the_builtin_templates_are_the_ones_mirrored() -> None:
    """Fails when story.txt.j2 or _footer.txt.j2 changes: update render/story_text.py
    to match, then its SOURCES_SHA256 (until then every story text goes through Jinja2)."""
    assert email._typed_text(email._template_dirs(CONFIGS[0]))


def test_an_override_goes_through_jinja(tmp_path: Path) -> None:
    (tmp_path / "email").mkdir()
    source = (builtin_dir() / "email" / "_footer.txt.j2").read_text(encoding="utf-8")
    (tmp_path / "email" / "_footer.txt.j2").write_text(source + "Printed on recycled electrons.\n", encoding="utf-8")
    cfg = build_config(site={"base_url": BASE}, paths={"templates": str(tmp_path)})
    assert not email._typed_text(email._template_dirs(cfg))
    brief = parse_brief((DATA / "reference.txt").read_bytes(), "reference.txt", base_url=BASE)
    assert render_story(brief, cfg).text.endswith("Printed on recycled electrons.\n")


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_samples(path: Path) -> None:
    brief = parse_brief(path.read_bytes(), path.name, base_url=BASE)
    for cfg in CONFIGS:
        assert render_story(brief, cfg).text == jinja_text(brief, cfg)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(brief_text(), st.sampled_from([0, 1]), st.sampled_from([0, 1, 6]))
def test_generated_briefs(source: str, which: int, known: int) -> None:
    try:
        brief = parse_brief(source.encode("utf-8"), "gen.md", base_url=BASE)
    except BriefError:
        return
    cfg = CONFIGS[which]
    titles = {slug: f"Related <{slug}> & co" for slug in brief.related[:known]}
    try:
        expected = jinja_text(brief, cfg, titles)
    except RenderError as exc:
        with pytest.raises(RenderError) as got:
            render_story(brief, cfg, related_titles=titles)
        assert str(got.value) == str(exc)
        return
    assert render_story(brief, cfg, related_titles=titles).text == expected
