"""Small pieces of the HTML path: folding's quick cut search agrees with the full walk; escaping agrees with markupsafe."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from markupsafe import Markup, escape

from publisher.render import mjml
from publisher.render.escape import e

PIECES = [
    "<p>", "</p>", "</td>", "<tr>", "<title>", "</title>", "<style>", "<STYLE x>", " ", "a", "word ", "b c", ">", "<",
    "-->", "&amp;", "&nbsp;", "é", "中文", "<a href=\"x y\">", "</a>", "<!--", "  ", "x" * 300, "中" * 200, "<span style=\"a b\">",
]


@contextmanager
def full_walk() -> Iterator[None]:
    quick = mjml.window_cut_points
    mjml.window_cut_points = mjml._scan_cut_points
    try:
        yield
    finally:
        mjml.window_cut_points = quick


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(PIECES), min_size=20, max_size=300).map("".join))
def test_quick_cut_points_fold_like_the_full_walk(line: str) -> None:
    quick = mjml._fold_html(line)
    with full_walk():
        assert quick == mjml._fold_html(line)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from([*PIECES, "\n", "y" * 1200, "é" * 700]), min_size=1, max_size=300).map("".join))
def test_the_longest_line_is_measured_while_folding(html: str) -> None:
    folded, longest = mjml._fold_measured(html)
    assert folded == mjml._fold_html(html)
    expected = mjml.longest_line(folded)
    # Lines up to FOLD_AT // 4 characters are not measured in octets; they cannot reach the limit.
    assert longest == expected or max(longest, expected) <= mjml.FOLD_AT


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), st.integers(), st.text().map(Markup)))
def test_the_writers_escape_as_autoescape_does(value: object) -> None:
    assert e(value) == str(escape(value))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(["\n", "a", "é", "中", "x" * 40, "y" * 249, "z" * 250, "\n\n"]), max_size=60).map("".join),
       st.sampled_from([0, 1, 3, 40, 249, 250]))
def test_a_line_over_the_length_is_found_as_splitting_finds_it(text: str, chars: int) -> None:
    assert mjml.has_line_over(text, chars) == (max(map(len, text.split("\n"))) > chars)


def test_a_text_line_over_the_limit_is_refused_and_one_at_it_is_not() -> None:
    from publisher.core.errors import RenderError

    mjml.check_text_lines("short\n" + "é" * 499 + "\nend\n", "t")  # 998 octets: at the limit
    with pytest.raises(RenderError, match="999-octet line"):
        mjml.check_text_lines("short\n" + "é" * 499 + "a\nend\n", "t")
