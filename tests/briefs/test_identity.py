"""identify(): the slug, title and status parse_brief gives, from the head alone."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.briefs import parse_brief
from publisher.briefs.identity import Identity, identify
from publisher.core.errors import BriefError

from tests.briefs.test_briefs_property import VALID, mutated_brief
from tests.support import briefgen

FRONT = st.sampled_from([
    "", "---\ntitle: From front matter\n---\n", "---\nslug: fm-slug\nstatus: draft\n---\n",
    "---\ntitle: '  <b>Tagged</b> & spaced  '\nslug: x-y\n---\n", "---\ncanonical: https://example.org/n/canon-slug\n---\n",
    "---\ntitle: [broken\n---\n", "---\nstatus: published\ncanonical: javascript:x\n---\n",
])


# Title and canonical lines as editors mistype them (the outline's rules decide which count).
HEAD_LINES = st.lists(st.sampled_from([
    "# Title", "#  Spaced title  ##", "#No space", "#", "#   ", "## Section", "#\tTabbed", "# ", "#  #", "# <b>x</b> &amp; y",
    "Canonical: https://example.org/n/one", "canonical:   https://example.org/n/two   ", "CANONICAL: https://x.example/a b",
    "Canonical: javascript:alert(1)", "Canonical:", " Canonical: https://example.org/n/indented", "text\u2028# not a title",
    "# Title \x0c", "\u00a0# nbsp", "> dek", "",
]), max_size=6).map("\n".join)


def _same_as_parse(data: bytes, path: str) -> None:
    got = identify(data, path)
    try:
        brief = parse_brief(data, path, base_url="https://base.example/")
    except BriefError:
        return  # the build records no story; any identity it had is corrected after recording
    assert got == Identity(brief.slug, brief.title, brief.status)


def test_every_sample_and_golden_brief() -> None:
    for data in VALID:
        _same_as_parse(data, "samples/some-story.md")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FRONT, briefgen.brief_text(), st.sampled_from(["a.md", "dir/My Story.txt", "x.md", "ünï.md"]))
def test_generated_briefs(front: str, body: str, path: str) -> None:
    _same_as_parse((front + body).encode("utf-8"), path)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FRONT, HEAD_LINES, briefgen.brief_text(), HEAD_LINES)
def test_title_and_canonical_lines_anywhere(front: str, before: str, body: str, after: str) -> None:
    _same_as_parse((front + before + "\n" + body + "\n" + after + "\n").encode("utf-8"), "head.md")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_brief())
def test_mutated_briefs(data: bytes) -> None:
    _same_as_parse(data, "fuzz.md")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    _same_as_parse(data, "fuzz.md")
