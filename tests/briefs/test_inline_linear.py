"""Hostile inline Markdown costs time in proportion to its size, and past a bound becomes plain text.

Time is CPU time of this process (``process_time``), best of a few runs, and
only *ratios* are compared with a wide margin, so a loaded machine cannot
fail the test; a quadratic path would grow 32x from one size to the next.
"""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.briefs import lint
from publisher.briefs.inline import MAX_MARKUP
from publisher.core.errors import BriefError
from tests.support.project import brief_text

HOSTILE = ["[", "]", "*a ", "_a ", "**", "`", "``a", "![", "[a](", "<a:", "&#", "\\", "> ", "\n> > ", "a ", "(", "]("]
PLACES = ["summary", "take", "section", "title"]
SIZES = (1_000, 32_000, 1_000_000)
MARGIN = 4.0


def _doc(payload: str, place: str) -> bytes:
    if place == "summary":
        return brief_text("x", "X", summary=payload).encode()
    if place == "title":
        return brief_text("x", payload.replace("\n", " ")).encode()
    base = brief_text("x", "X")
    if place == "take":
        return base.replace("— A take.", "— " + payload.replace("\n", " ")).encode()
    return (base + "\n## Notes\n\n" + payload + "\n").encode()


def _cpu(data: bytes, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.process_time()
        try:
            lint(data, "x.md")
        except BriefError:
            pass  # hostile text may well be no brief: the cost is what is measured
        best = min(best, time.process_time() - start)
    return max(best, 1e-6)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(unit=st.lists(st.sampled_from(HOSTILE), min_size=1, max_size=4).map("".join), place=st.sampled_from(PLACES))
def test_time_per_byte_stays_flat_from_1kb_to_1mb(unit: str, place: str) -> None:
    per_byte = []
    for size in SIZES:
        payload = (unit * (size // len(unit) + 1))[:size]
        per_byte.append(_cpu(_doc(payload, place), runs=3 if size < 100_000 else 2) / size)
    small, middle, large = per_byte
    # Each step is 32x more input; linear work keeps the cost per byte flat (fixed costs make small sizes dearer).
    assert middle <= MARGIN * small, (unit, place, per_byte)
    assert large <= MARGIN * middle, (unit, place, per_byte)


def test_a_field_past_the_markup_bound_is_plain_text_with_a_warning() -> None:
    brief, findings = lint(brief_text("x", "X", summary="[" * (MAX_MARKUP + 1) + " *a* [b](https://e.example/)").encode(), "x.md")
    assert brief is not None
    assert "<em>" not in brief.summary.html and "<a " not in brief.summary.html
    assert brief.summary.html.startswith("<p>[[[")
    assert any("published as plain text" in f.message and f.severity == "warning" for f in findings)
    # Under the bound, the same field is Markdown.
    brief, findings = lint(brief_text("x", "X", summary="[" * 10 + " *a* [b](https://e.example/)").encode(), "x.md")
    assert brief is not None and "<em>a</em>" in brief.summary.html and not findings


def test_many_fields_share_one_bound_per_file() -> None:
    paragraphs = "\n\n".join("[" * (MAX_MARKUP - 10) + " *a*" for _ in range(40))
    brief, findings = lint(brief_text("x", "X", summary=paragraphs).encode(), "x.md")
    assert brief is not None
    warnings = [f for f in findings if "in the file" in f.message]
    assert len(warnings) == 1  # said once, not per paragraph
    assert "<em>a</em>" in brief.summary.html and brief.summary.html.count("<em>") < 40
