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


def direct(brief: Brief, cfg: Config) -> RenderedIssue | RenderError:
    """The same render with every issue compiled straight from its MJML."""
    saved = email._builtin_mjml
    email._builtin_mjml = lambda dirs: False  # type: ignore[assignment]
    try:
        return render_story(brief, cfg)
    except RenderError as exc:
        return exc
    finally:
        email._builtin_mjml = saved


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
    """Cutting takes to fit the HTML budget moves through several shapes."""
    brief = parse_brief((DATA / "reference.txt").read_bytes(), "reference.txt", base_url=BASE)
    cfg = config()
    small = dataclasses.replace(cfg, email=dataclasses.replace(cfg.email, max_html_bytes=len(direct_html(brief, cfg)) - 2500))
    with fresh_cache() as cache:
        assert_same(brief, small)
        assert cache.misses >= 2


def direct_html(brief: Brief, cfg: Config) -> str:
    issue = direct(brief, cfg)
    assert isinstance(issue, RenderedIssue)
    return issue.html


# -- generated briefs ------------------------------------------------------------

# Text that mjml, Jinja's escaping or the line folding could treat differently
# from the token standing for it: markup characters, entities, quotes, RTL and
# CJK, unusual whitespace, Markdown punctuation, very long words and URLs.
PIECES = [
    "a", "plain words here", "<", ">", "&", "&amp;", "&nbsp;", "&#39;", '"', "'", "<mj-text>", "</p>", "<br>",
    "עברית", "العربية", "中文字符测试", "日本語", "한국어", "\u00a0", "\u2028", "\u3000", "\u200b", "\u202e", "é",
    "*em*", "**strong**", "_u_", "`code`", "[link](https://example.org/a?b=1&c=2)", "[rel](/x)", "[bad](javascript:x)",
    "e\u0301", "\u0915\u093f", "\U0001f44d\U0001f3fd", "\ufeff", "\ufe0f", "x" * 120, "https://example.org/" + "p" * 200, "中" * 400, "word " * 60, "  ", "\\", "!", "Qz1zQ", "{{ x }}", "%",
]
text = st.lists(st.sampled_from(PIECES), min_size=1, max_size=6).map(" ".join)
line = text.map(lambda s: s.replace("\n", " ").strip() or "x")
multiline = st.lists(text, min_size=1, max_size=3).map(lambda parts: "\n".join(p.strip() or "y" for p in parts))


@st.composite
def take(draw: st.DrawFn) -> str:
    outlet = draw(line).replace("*", "")
    paren = draw(st.sampled_from(["", " (United States, en)", " (Israel, he)", " (中国, zh)", " (Egypt, ar)", " (, )", " (X)"]))
    body = draw(st.one_of(st.just(""), line))
    out = f"- **{outlet or 'Outlet'}**{paren} — {body}\n"
    if draw(st.booleans()):
        out += f"  > \"{draw(line)}\"\n"
    if draw(st.booleans()):
        out += "  Source: " + draw(st.sampled_from(["https://example.org/s?a=1&b=2", "https://x.example/" + "q" * 300, "ftp://x"])) + "\n"
    return out


@st.composite
def brief_text(draw: st.DrawFn) -> str:
    parts = [f"# {draw(line)}\n"]
    if draw(st.booleans()):
        parts.append(f"> {draw(line)}\n")
    parts.append("\n**Meta:** type: event · date: 2026-06-24\n\n## Summary\n\n")
    parts.append("\n\n".join(draw(st.lists(multiline, min_size=1, max_size=3))) + "\n")
    if draw(st.booleans()):
        parts.append(f"\n## Why it matters\n\n{draw(multiline)}\n")
    watch = draw(st.lists(line, max_size=4))
    if watch:
        parts.append("\n## What to watch\n\n" + "".join(f"- {w}\n" for w in watch))
    lenses = draw(st.lists(st.tuples(st.sampled_from(["US tech", "unlabelled", "Gulf press", "中文媒体", "A & B"]), st.lists(take(), min_size=1, max_size=4)), max_size=4))
    if lenses:
        parts.append("\n## Regional takes\n\n")
        for name, takes in lenses:
            parts.append(f"### {name}\n" + "".join(takes) + "\n")
    if draw(st.booleans()):
        parts.append(f"\n## Notes from {draw(line)}\n\n{draw(multiline)}\n\n- item one\n- {draw(line)}\n\n```\n  code <x> &\n\n```\n")
    if draw(st.booleans()):
        related = draw(st.sampled_from(["[[other-story]]", "[[a]], [[b-c]]", ""]))
        ents = ", ".join(draw(st.lists(line.map(lambda s: s.replace(",", " ")), max_size=4)))
        parts.append(f"\n## Across the graph\n\nRelated: {related}\nEntities: {ents}\n")
    return "".join(parts)


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
    saved = email._builtin_mjml
    email._builtin_mjml = lambda dirs: False  # type: ignore[assignment]
    try:
        return render_story(brief, cfg, related_titles=titles).html
    finally:
        email._builtin_mjml = saved
