"""A skeleton's folded size, counted without filling it, is the size of the filled, folded HTML.

A build renders a story's email only to learn how many takes fit the HTML
budget (``email.story_web_text``). ``skeleton.folded_octets`` counts the
octets ``mjml.html_octets`` gives the filled skeleton from where the
literals' newlines and break tags are (found once per shape) and the bodies'
octets, and answers None where only the exact path can tell. The exact path
is the specification: every answer that is not None must equal it, and an
HTML that folding cannot keep under the line limit must get None (so the
exact path raises as it did).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.briefs import parse_brief
from publisher.briefs.model import Brief
from publisher.core.config import Config
from publisher.core.errors import BriefError, RenderError
from publisher.render import email, mjml, skeleton, story_mjml
from publisher.render.skeleton import Skeleton, fill, folded_octets
from tests.support.briefgen import brief_text
from tests.support.files import DATA, SAMPLES
from tests.support.project import build_config

BASE = "https://briefs.example.org/"
FILES = sorted((DATA / "briefs").iterdir()) + sorted(SAMPLES.iterdir()) + [DATA / "reference.txt"]
CONFIGS = [
    build_config(site={"title": "World Briefs", "base_url": BASE}),
    build_config(site={"title": "A & B <Briefs>", "base_url": BASE, "language": "ar", "logo": "https://briefs.example.org/l.png"}),
    build_config(site={"title": "World Briefs", "base_url": BASE}, email={"max_html_bytes": 20_000}),
]

# What compiled HTML and bodies are made of, the pieces folding cares about
# among them: break tags, spaces in text and in tags, text with no space (a
# comment cut), <title> and <style> text (never cut), newlines, multi-byte
# text; and, rarer, what only the exact path can tell: a break tag split in
# two (it may straddle a literal and a body), an unbreakable URL.
COMMON = [
    "<p>", "</p>", "</td>", "<tr>", "</div>", "<![endif]-->", "<tbody>", " ", "word ", "words and more words ", "é",
    "中文", "\n", "\n  ", "y" * 300, "é" * 200, '<div style="display:none;max-height:0px;overflow:hidden;">',
    "<title>", "</title>", "<style>", "</style>", "&amp;", "\U0001f44d" * 50, '<td style="padding:0 8px">',
]
RARE = ["</t", "d>", "</", "p>", "<![endif", "]-->", "<", ">", "z" * 950, "中" * 150, '<a href="https://x.example/' + "q" * 400 + '">',
        "<!--", "-->"]
FRAGMENTS = COMMON * 6 + RARE
fragments = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join)
CACHE = skeleton.SkeletonCache()
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def exact(sk: Skeleton, bodies: list[str]) -> int | RenderError:
    try:
        return mjml.html_octets(fill(sk, bodies), "t")
    except RenderError as exc:
        return exc


def check(lits: list[str], bodies: list[str], slots: list[int], debug: frozenset[int] = frozenset()) -> int | None:
    sk = Skeleton((tuple(lits), tuple(slots)), debug, skeleton._layout(lits))
    counted = folded_octets(sk, bodies)
    expected = exact(sk, bodies)
    if isinstance(expected, RenderError):
        assert counted is None  # only the exact path raises, with its message
    elif counted is not None:
        assert counted == expected
    return counted


@SETTINGS
@given(st.lists(st.tuples(fragments, fragments), min_size=1, max_size=8), fragments)
def test_the_counted_size_is_the_folded_size(pairs: list[tuple[str, str]], tail: str) -> None:
    lits = [lit for lit, _body in pairs] + [tail]
    bodies = [body for _lit, body in pairs]
    check(lits, bodies, list(range(len(bodies))))


@SETTINGS
@given(st.lists(st.tuples(fragments, fragments), min_size=2, max_size=6), fragments, st.data())
def test_a_body_in_several_slots_and_as_a_title(pairs: list[tuple[str, str]], tail: str, data: st.DataObject) -> None:
    lits = [lit for lit, _body in pairs] + [tail]
    bodies = [body for _lit, body in pairs]
    slots = data.draw(st.lists(st.integers(0, len(bodies) - 1), min_size=len(pairs), max_size=len(pairs)))
    lits[0] += '<div aria-label="'  # the title's copy, Rust-Debug-escaped
    try:
        check(lits, bodies, slots, frozenset({0}))
    except skeleton.Unfit:
        pass  # a title mrml would escape otherwise: the issue is compiled directly


def test_long_lines_of_break_tags_and_of_words_are_counted() -> None:
    cell = "</td><td>" + "x" * 100
    para = "<p>" + "word " * 60 + "</p>"
    assert check(["<html>\n<body>" + cell * 5, para * 6 + "</div>", "\n</body>\n</html>"], [para * 4, cell * 12], [0, 1]) is not None
    # The first window holds no break tag: the cut falls after its last space.
    assert check(['<div style="display:none">' + "a " * 500, "</div>" + cell * 20], ["b " * 300], [0]) is not None


def test_what_only_the_exact_path_can_tell_is_left_to_it() -> None:
    # Text without spaces is cut inside a comment, which adds octets.
    assert check(["<p>", "</p>"], ["中" * 700], [0]) is None
    # A break tag may run across a literal's end or start ("</t" + "d>"), or through a literal between two bodies.
    assert skeleton._layout(["<p>x</t", "</p>"]) is None
    assert skeleton._layout(["<p>", "d><p>"]) is None
    assert skeleton._layout(["<p>", "x", "</p>"]) is None
    assert skeleton._layout(["<p>", "</p><p>", "</p>"]) is not None
    # A lone surrogate does not encode: the exact path fails as it did (with the error encode raises).
    lits = ("<p>", "</p>")
    sk = Skeleton((lits, (0,)), frozenset(), skeleton._layout(lits))
    assert folded_octets(sk, ["\ud800 word"]) is None
    with pytest.raises(UnicodeEncodeError):
        mjml.html_octets(fill(sk, ["\ud800 word"]), "t")
    # An unbreakable line: None, and the exact path raises.
    url = '<a href="https://x.example/' + "q" * 1200 + '">'
    assert check(["<p>", "</p>"], [url], [0]) is None


def story_skeletons(brief: Brief, cfg: Config) -> Iterator[tuple[Skeleton, list[str]]]:
    """The skeleton and bodies of each email HTML a story's render tried (one per number of takes)."""
    contexts: list[tuple[str, dict[str, Any]]] = []
    try:
        email._story(brief, cfg, None, sized=False, contexts=contexts)
    except RenderError:
        pass  # what it tried before it failed is still counted
    for kind, context in contexts:
        if kind == "mjml":
            pieces = story_mjml.story_pieces(context)
            try:
                yield CACHE.lookup(("t",), "".join(pieces.parts), "t", (pieces.parts, pieces.slots))
            except skeleton.Unfit:
                continue  # compiled directly: nothing to count


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_sample_stories_are_counted_without_filling(path: Path) -> None:
    brief = parse_brief(path.read_bytes(), path.name, base_url=BASE)
    for cfg in CONFIGS:
        for sk, bodies in story_skeletons(brief, cfg):
            assert sk.layout is not None
            counted = folded_octets(sk, bodies)
            assert counted is not None  # the shipped template's stories take the fast path
            assert counted == mjml.html_octets(fill(sk, bodies), "t")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(brief_text())
def test_generated_stories_count_what_the_exact_path_measures(source: str) -> None:
    try:
        brief = parse_brief(source.encode("utf-8"), "gen.md", base_url=BASE)
    except BriefError:
        return
    for cfg in CONFIGS:
        for sk, bodies in story_skeletons(brief, cfg):
            counted = folded_octets(sk, bodies)
            expected = exact(sk, bodies)
            if isinstance(expected, RenderError):
                assert counted is None
            elif counted is not None:
                assert counted == expected
