"""A brief's coverage, built by its fast paths, is what the plain code builds.

The references here are the straightforward forms the fast paths replaced:
every field through clean_line, every value through its dataclass's
constructor, the lens counts in their own pass. They are compared with
coverage._build on the sample briefs and on generated hostile ones.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.briefs import parse_brief
from publisher.briefs.model import Brief, Lens, Take
from publisher.core.errors import BriefError
from publisher.core.urls import is_http_url
from publisher.render import coverage
from publisher.render.coverage import BriefCoverage, LensGroup, TakeView
from publisher.render.text import clean_line
from tests.support.briefgen import PIECES, brief_text
from tests.render.test_render_fast_paths import _SENTENCE_STOP, first_sentence_reference
from tests.support.files import DATA, SAMPLES

BASE = "https://briefs.example.org/"
FILES = sorted((DATA / "briefs").iterdir()) + sorted(SAMPLES.iterdir()) + [DATA / "reference.txt"]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def take_view_reference(take: Take, label: str) -> TakeView:
    text = take.text
    return TakeView(
        outlet=clean_line(take.outlet) or "Unnamed outlet",
        region=clean_line(take.region),
        lang=coverage.lang_tag(take.language),
        dir=coverage.direction(take.language),
        language=coverage.language_name(take.language),
        lens=label,
        sentence=first_sentence_reference(text.text) if text else "",
        text_html=text.html,
        quote=clean_line(take.quote) if take.quote else None,
        italic=coverage.italic_ok(take.language),
        source=take.source if take.source and is_http_url(take.source) else None,
    )


def build_reference(lenses: tuple[Lens, ...]) -> BriefCoverage:
    labels = [coverage.lens_label(lens) for lens in lenses]
    groups = [LensGroup(label, tuple(v for v in views if v.sentence), tuple(v for v in views if not v.sentence))
              for label, views in ((label, [take_view_reference(t, label) for t in lens.takes]) for lens, label in zip(lenses, labels))]
    groups.sort(key=lambda g: g.label == "")
    counts: dict[str, int] = {}
    for lens, label in zip(lenses, labels):
        if label and lens.takes:
            counts[label] = counts.get(label, 0) + len(lens.takes)
    first = {label: i for i, label in reversed(list(enumerate(labels)))}
    lens_counts = tuple(sorted(counts.items(), key=lambda kv: (-kv[1], first[kv[0]])))
    regions: dict[str, int] = {}
    names: dict[str, str] = {}
    for lens in lenses:
        for t in lens.takes:
            if t.region:
                regions[t.region] = regions.get(t.region, 0) + 1
                names[t.region] = clean_line(t.region)
    region_counts = tuple((names[r], n) for r, n in sorted(regions.items(), key=lambda kv: -kv[1]) if names[r])
    n_takes = sum(len(lens.takes) for lens in lenses)
    return BriefCoverage(
        groups=tuple(groups),
        lenses=lens_counts,
        regions=region_counts,
        counts_line=coverage._counts_line(n_takes, len(lens_counts), len(region_counts)),
        also=tuple(v for g in groups for v in g.folded),
    )


def check(brief: Brief) -> None:
    built = coverage._build(brief.lenses)
    expected = build_reference(brief.lenses)
    assert built == expected
    # Every value hashes as one its constructor made from its fields.
    for group in built.groups:
        # Built again from its fields, each value is equal and hashes the same.
        assert hash(group) == hash(LensGroup(*(getattr(group, name) for name in LensGroup._fields)))
        for view in group.rows + group.folded:
            twin = TakeView(*(getattr(view, name) for name in TakeView._fields))
            assert twin == view and hash(twin) == hash(view)
    assert built.pick(3) == coverage._pick(expected.groups, 3)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_sample_coverage_is_the_reference(path: Any) -> None:
    check(parse_brief(path.read_bytes(), path.name, base_url=BASE))


@SETTINGS
@given(brief_text())
def test_generated_coverage_is_the_reference(source: str) -> None:
    try:
        brief = parse_brief(source.encode("utf-8"), "gen.md", base_url=BASE)
    except BriefError:
        return
    check(brief)


@SETTINGS
@given(st.lists(st.sampled_from([*PIECES, "\x7f", "\x1f", "\t", " ", "a" * 90, "\u0085", "Z"]), max_size=8).map("".join) | st.text())
def test_is_clean_is_whether_clean_line_keeps_the_value(value: str) -> None:
    # clean_line also keeps unassigned and private-use characters, which are not
    # printable: for those _is_clean says no and clean_line is asked.
    assert coverage._is_clean(value) == (value.isprintable() and clean_line(value) == value)


def test_long_ascii_values_with_a_control_character_are_not_clean() -> None:
    for code in [*range(0x20), 0x7F]:
        for at in (0, 45, 99):
            value = "a" * at + chr(code) + "b" * (99 - at)
            assert not coverage._is_clean(value), (code, at)
    assert coverage._is_clean("a" * 100) and coverage._is_clean("a b" * 40)


def test_tied_lenses_keep_the_order_of_their_first_lens() -> None:
    lens_lines = "".join(f"### {name}\n- **O{i}** (R{i}, en) — Text {i}.\n  Source: https://s.example/{i}\n" for i, name in enumerate("ABAC"))
    source = f"# T\n\n**Meta:** date: 2026-06-24\n\n## Summary\n\nS.\n\n## Regional takes\n\n{lens_lines}"
    brief = parse_brief(source.encode(), "t.md", base_url=BASE)
    assert coverage._build(brief.lenses).lenses == (("A", 2), ("B", 1), ("C", 1))
    check(brief)


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from([".", "!", "?", " ", "  ", "\t", "A", "a", "1", "(", '"', "“", "。", "Stop. Next", "x! Y", "q? (Z"]), max_size=12).map("".join))
def test_the_sentence_end_is_where_the_single_regex_stops(flat: str) -> None:
    stop = _SENTENCE_STOP.search(flat)
    assert coverage._sentence_end(flat) == (stop.end() if stop else None), flat
