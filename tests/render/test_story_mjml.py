"""The story's MJML written by render.story_mjml equals what the Jinja2 templates render."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.briefs import parse_brief
from publisher.briefs.model import Brief
from publisher.core.config import Config
from publisher.core.errors import BriefError, RenderError
from publisher.render import email, story_mjml
from publisher.render.email import RenderedIssue, render_story
from publisher.render.templating import builtin_dir
from tests.support.briefgen import brief_text
from tests.support.files import DATA, SAMPLES
from tests.support.mirrors import through_jinja
from tests.support.project import build_config

BASE = "https://briefs.example.org/"
FILES = sorted((DATA / "briefs").iterdir()) + sorted(SAMPLES.iterdir())
CONFIGS = [
    build_config(site={"title": "World Briefs", "base_url": BASE}),
    build_config(site={"title": "A & B <Briefs> \"q\" 'x'", "base_url": BASE, "language": "ar", "logo": "https://briefs.example.org/l.png?a=1&b=2"},
                 email={"sender_name": "Desk & Co", "postal_address": "Elsewhere <1> Long Road"}),
]


def both(brief: Brief, cfg: Config, titles: dict[str, str] | None = None) -> tuple[RenderedIssue | str, RenderedIssue | str]:
    def one() -> RenderedIssue | str:
        try:
            return render_story(brief, cfg, related_titles=titles)
        except RenderError as exc:
            return str(exc)

    typed = one()
    with through_jinja(story_mjml):
        jinja = one()
    return typed, jinja


def test_the_builtin_templates_are_the_ones_mirrored() -> None:
    """Fails when story.mjml.j2 or a partial changes: update render/story_mjml.py to
    match, then its SOURCES_SHA256 (until then every story's MJML goes through Jinja2)."""
    dirs = email._template_dirs(CONFIGS[0])
    assert email.mirrored(dirs, story_mjml.TEMPLATES, story_mjml.SOURCES_SHA256)


def test_an_override_goes_through_jinja(tmp_path: Path) -> None:
    (tmp_path / "email").mkdir()
    source = (builtin_dir() / "email" / "_footer.mjml.j2").read_text(encoding="utf-8")
    (tmp_path / "email" / "_footer.mjml.j2").write_text(source.replace("Unsubscribe</a>", "Leave</a>"), encoding="utf-8")
    cfg = build_config(site={"base_url": BASE}, paths={"templates": str(tmp_path)})
    assert not email.mirrored(email._template_dirs(cfg), story_mjml.TEMPLATES, story_mjml.SOURCES_SHA256)
    brief = parse_brief((DATA / "reference.txt").read_bytes(), "reference.txt", base_url=BASE)
    assert ">Leave</a>" in render_story(brief, cfg).mjml


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_samples(path: Path) -> None:
    brief = parse_brief(path.read_bytes(), path.name, base_url=BASE)
    for cfg in CONFIGS:
        typed, jinja = both(brief, cfg, {slug: f"<{slug}> & co" for slug in brief.related})
        assert typed == jinja


def test_a_budget_that_cuts_takes() -> None:
    brief = parse_brief((DATA / "reference.txt").read_bytes(), "reference.txt", base_url=BASE)
    cfg = CONFIGS[0]
    issue = render_story(brief, cfg)
    small = dataclasses.replace(cfg, email=dataclasses.replace(cfg.email, max_html_bytes=len(issue.html) - 2500))
    typed, jinja = both(brief, small)
    assert typed == jinja and isinstance(typed, RenderedIssue) and typed.html != issue.html


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(brief_text(), st.sampled_from([0, 1]), st.sampled_from([0, 1, 6]))
def test_generated_briefs(source: str, which: int, known: int) -> None:
    try:
        brief = parse_brief(source.encode("utf-8"), "gen.md", base_url=BASE)
    except BriefError:
        return
    typed, jinja = both(brief, CONFIGS[which], {slug: f"Related <{slug}> & co" for slug in brief.related[:known]})
    assert typed == jinja


@pytest.mark.parametrize("lenses", [1, 11, 12])
def test_one_take_and_more_lenses_than_chips(lenses: int) -> None:
    takes = "".join(
        f"### Lens {i}\n- **Outlet {i}** (Region {i % 3}, en) — Said something {i}.\n  Source: https://example.org/{i}\n\n"
        for i in range(lenses)
    )
    source = f"# Title\n\n**Meta:** date: 2026-06-24\n\n## Summary\n\nText.\n\n## Regional takes\n\n{takes}"
    brief = parse_brief(source.encode(), "lenses.md", base_url=BASE)
    typed, jinja = both(brief, CONFIGS[0])
    assert typed == jinja and isinstance(typed, RenderedIssue)
    assert ("more lens" in typed.mjml) == (lenses > 10)
