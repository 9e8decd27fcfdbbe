"""The story email from a compiled skeleton is byte-identical to compiling its MJML directly."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.briefs import parse_brief
from publisher.briefs.model import Brief
from publisher.core.config import Config
from publisher.core.errors import BriefError, RenderError
from publisher.render import email
from publisher.render.email import RenderedIssue, render_story
from publisher.render.skeleton import SkeletonCache
from tests.support.briefgen import brief_text
from tests.support.files import DATA, SAMPLES
from tests.support.project import build_config

BASE = "https://briefs.example.org/"
FILES = sorted((DATA / "briefs").iterdir()) + sorted(SAMPLES.iterdir())


def config(**site: Any) -> Config:
    return build_config(
        site={"title": "World Briefs", "base_url": BASE, **site},
        email={"sender_name": "Desk", "postal_address": "Desk, 1 Example Street"},
    )


CONFIGS = [
    config(),
    config(language="he", logo="https://briefs.example.org/logo.png"),
    config(title="A & B <Briefs> \"quoted\" 'x'", language="zh"),
]


@contextmanager
def fresh_cache() -> Iterator[SkeletonCache]:
    saved = email.SKELETONS
    email.SKELETONS = SkeletonCache()
    try:
        yield email.SKELETONS
    finally:
        email.SKELETONS = saved


@contextmanager
def no_skeletons() -> Iterator[None]:
    saved = email.SKELETONS
    email.SKELETONS = SkeletonCache(direct=True)
    try:
        yield
    finally:
        email.SKELETONS = saved


def direct(brief: Brief, cfg: Config) -> RenderedIssue | RenderError:
    """The same render with every issue compiled straight from its MJML."""
    with no_skeletons():
        try:
            return render_story(brief, cfg)
        except RenderError as exc:
            return exc


def via_skeleton(brief: Brief, cfg: Config) -> RenderedIssue | RenderError:
    try:
        return render_story(brief, cfg)
    except RenderError as exc:
        return exc


def assert_same(brief: Brief, cfg: Config) -> None:
    expected = direct(brief, cfg)
    got = via_skeleton(brief, cfg)
    if isinstance(expected, RenderError):
        assert isinstance(got, RenderError) and str(got) == str(expected)
        return
    assert isinstance(got, RenderedIssue)
    assert got.mjml == expected.mjml
    assert got.html == expected.html
    assert got == expected


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("cfg", CONFIGS, ids=["en", "he-logo", "zh-hostile-title"])
def test_samples_take_the_skeleton_path_and_match(path: Path, cfg: Config) -> None:
    brief = parse_brief(path.read_bytes(), path.name, base_url=BASE)
    with fresh_cache() as cache:
        assert_same(brief, cfg)
        assert cache.misses >= 1 and cache.unfit == 0
        # A second render of the same shape compiles nothing.
        misses = cache.misses
        assert_same(brief, cfg)
        assert cache.misses == misses


def test_budget_retries_match() -> None:
    """Cutting takes to fit the HTML budget re-renders the MJML, not the shape: one compile."""
    brief = parse_brief((DATA / "reference.txt").read_bytes(), "reference.txt", base_url=BASE)
    cfg = config()
    small = dataclasses.replace(cfg, email=dataclasses.replace(cfg.email, max_html_bytes=len(direct_html(brief, cfg)) - 2500))
    with fresh_cache() as cache:
        assert_same(brief, small)
        assert cache.misses == 1


def direct_html(brief: Brief, cfg: Config) -> str:
    issue = direct(brief, cfg)
    assert isinstance(issue, RenderedIssue)
    return issue.html


# -- generated briefs ------------------------------------------------------------


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(brief_text(), st.sampled_from(range(len(CONFIGS))), st.sampled_from([0, 1, 6]))
def test_generated_briefs_match_direct_compile(source: str, which: int, related_known: int) -> None:
    try:
        brief = parse_brief(source.encode("utf-8"), "gen.md", base_url=BASE)
    except BriefError:
        return
    cfg = CONFIGS[which]
    assert_same(brief, cfg)
    titles = {slug: f"Title <{slug}> & co" for slug in brief.related[:related_known]}
    assert via_skeleton_related(brief, cfg, titles) == direct_related(brief, cfg, titles)


def via_skeleton_related(brief: Brief, cfg: Config, titles: dict[str, str]) -> str:
    return render_story(brief, cfg, related_titles=titles).html


def direct_related(brief: Brief, cfg: Config, titles: dict[str, str]) -> str:
    with no_skeletons():
        return render_story(brief, cfg, related_titles=titles).html


def test_text_that_looks_like_a_token_is_compiled_directly() -> None:
    source = b"# Qz0zQ\n\n**Meta:** date: 2026-06-24\n\n## Summary\n\nQz1zQ and Qz99zQ.\n"
    brief = parse_brief(source, "token.md", base_url=BASE)
    with fresh_cache() as cache:
        assert_same(brief, CONFIGS[0])
        assert cache.unfit == 1 and cache.misses == 0


def test_a_corpus_shares_a_few_shapes() -> None:
    """Stories differ in text, not in structure: the point of compiling per shape."""
    samples = sorted(SAMPLES.iterdir())
    with fresh_cache() as cache:
        for path in samples:
            brief = parse_brief(path.read_bytes(), path.name, base_url=BASE)
            render_story(brief, CONFIGS[0])
        assert cache.misses <= len(samples) // 2, cache.misses
