"""The renderers' fast paths write what their slow paths (or the code they replaced) write.

Each fast path skips work when it can prove the result: a line that fits is
not run through the wrap regex, the story MJML's bodies are not re-scanned,
an ASCII sentence is cut with str.find, a brief's coverage is built once. The
references below are the slow paths, kept here as the specification.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.briefs import parse_brief
from publisher.briefs.inline import PLAIN_HTTP_URL
from publisher.briefs.model import Brief, Lens
from publisher.core.config import Config
from publisher.core.errors import BriefError, RenderError
from publisher.core.urls import is_http_url
from publisher.render import coverage, email, escape, mjml, skeleton, story_mjml, text
from publisher.render.coverage import LensGroup, TakeView
from tests.support.briefgen import PIECES, brief_text
from tests.support.files import DATA, SAMPLES
from tests.support.project import build_config

BASE = "https://briefs.example.org/"
FILES = sorted((DATA / "briefs").iterdir()) + sorted(SAMPLES.iterdir()) + [DATA / "reference.txt"]
CONFIGS = [
    build_config(site={"title": "World Briefs", "base_url": BASE}),
    build_config(site={"title": "A & B <Briefs> \"q\" 'x'", "base_url": BASE, "language": "ar", "logo": "https://briefs.example.org/l.png?a=1&b=2"},
                 email={"sender_name": "Desk & Co", "postal_address": "Elsewhere <1> Long Road"}),
]
HOSTILE = st.lists(st.sampled_from([*PIECES, "\n", "\n\n", "\t", " \n \n", "Word. Next", "end! “Quoted", "x? (Y", "a.b", "..."]),
                   max_size=30).map("".join) | st.text()
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def parsed(source: str) -> Brief | None:
    try:
        return parse_brief(source.encode("utf-8"), "gen.md", base_url=BASE)
    except BriefError:
        return None


# -- escape ----------------------------------------------------------------------


@SETTINGS
@given(st.text() | st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)) | st.sampled_from(PIECES))
def test_the_c_escape_writes_what_the_regex_escape_writes(value: str) -> None:
    assert escape.escape_str(value) == escape._escape_str(value)


# -- wrap ------------------------------------------------------------------------

_PARA_BREAK = re.compile(r"\n[ \t]*\n")


def wrap_reference(value: str, width: int = text.TEXT_WIDTH, indent: str = "", subsequent: str | None = None) -> str:
    """text.wrap before its fast paths: every paragraph through the regex, each piece stripped."""
    sub = indent if subsequent is None else subsequent
    pattern = re.compile(r"(?:.{1,%d}|\S+)(?: +|$)" % max(width - max(len(indent), len(sub)), 20))
    out = []
    first = True
    for para in _PARA_BREAK.split(str(value)):
        words = " ".join(para.split())
        if not words:
            continue
        if not words.isascii() and text._WIDE.search(words):
            lines = text.fill_wide(words, width, indent if first else sub, sub)
        else:
            pieces = pattern.findall(words)
            lines = [(indent if first else sub) + pieces[0].rstrip()]
            lines.extend(sub + piece.rstrip() for piece in pieces[1:])
        out.append("\n".join(lines))
        first = False
    return "\n\n".join(out)


@SETTINGS
@given(HOSTILE, st.sampled_from([72, 40, 20, 10]), st.sampled_from([("", None), ("* ", "  "), ("  * ", "    "), ("  ", "  ")]))
def test_wrap_fast_paths_match_the_regex_path(value: str, width: int, indents: tuple[str, str | None]) -> None:
    indent, subsequent = indents
    assert text.wrap(value, width, indent, subsequent) == wrap_reference(value, width, indent, subsequent)
    assert text.underline(value, "=") == text.underline_wrapped(wrap_reference(value), "=")


def test_a_line_that_fits_skips_the_regex() -> None:
    """The fast path is taken (not only correct): a short line never reaches the pattern cache."""
    text._line_pattern.cache_clear()
    assert text.wrap("CNBC [3] · United States · US tech", indent="* ", subsequent="  ") == "* CNBC [3] · United States · US tech"
    assert text._line_pattern.cache_info().misses == 0


# -- first sentence, sources -----------------------------------------------------

_SENTENCE_STOP = re.compile(r"[.!?](?=\s+[\"“‘(\[]?[A-Z0-9])|[。！？]")


def first_sentence_reference(value: str, words: int = coverage.MAX_TAKE_WORDS) -> str:
    flat = text.clean_line(value)
    stop = _SENTENCE_STOP.search(flat)
    sentence = (flat[: stop.end()] if stop else flat).strip()
    parts = sentence.split()
    if len(parts) > words:
        sentence = " ".join(parts[:words]).rstrip(",;:") + "…"
    elif len(sentence) > coverage._MAX_TAKE_CHARS:
        sentence = sentence[: coverage._MAX_TAKE_CHARS - 1] + "…"
    return sentence


@SETTINGS
@given(HOSTILE, st.sampled_from([25, 3, 1]))
def test_first_sentence_matches_the_single_regex(value: str, words: int) -> None:
    assert coverage.first_sentence(value, words) == first_sentence_reference(value, words)


URL = st.builds(
    "".join,
    st.tuples(
        st.sampled_from(["http://", "https://", "HTTP://", "ftp://", "http:/", "", "https://@", "http://["]),
        st.text(st.sampled_from("aZ09.-_:@[]é "), max_size=12),
        st.sampled_from(["", ":80", ":123456", ":x"]),
        st.sampled_from(["", "/", "/p?q=1&r=2#f", "?x", "#y", "\n", " x", "/\t"]),
    ),
)


@SETTINGS
@given(URL)
def test_a_plain_host_is_an_http_url(url: str) -> None:
    if coverage._HTTP_HOST.match(url):
        assert is_http_url(url)
    if PLAIN_HTTP_URL.match(url):
        assert coverage._HTTP_HOST.match(url)


# -- one coverage per brief ------------------------------------------------------


def region_counts_reference(brief: Brief) -> list[tuple[str, int]]:
    return [(text.clean_line(r), n) for r, n in brief.region_distribution() if text.clean_line(r)]


def lens_counts_reference(lenses: tuple[Lens, ...]) -> list[tuple[str, int]]:
    counter: Counter[str] = Counter()
    for lens in lenses:
        label = coverage.lens_label(lens)
        if label and lens.takes:
            counter[label] += len(lens.takes)
    order = {coverage.lens_label(lens): i for i, lens in enumerate(reversed(lenses))}
    return sorted(counter.items(), key=lambda kv: (-kv[1], -order[kv[0]]))


def capped_reference(all_groups: tuple[LensGroup, ...], limit: int) -> tuple[tuple[LensGroup, ...], int]:
    out: list[LensGroup] = []
    left, hidden = limit, 0
    for g in all_groups:
        rows, folded = g.rows[: max(left, 0)], g.folded[: max(left - len(g.rows), 0)]
        left -= len(rows) + len(folded)
        hidden += len(g.rows) - len(rows) + len(g.folded) - len(folded)
        if rows or folded:
            out.append(LensGroup(g.label, rows, folded))
    return tuple(out), hidden


def check_coverage(brief: Brief) -> None:
    view = coverage.of(brief)
    assert coverage.of(brief) is view and coverage.groups(brief) is view.groups
    # Every take view is the value its constructor would make, hashable and
    # equal, with every field set on it (none left to a class-level default).
    names = list(TakeView._fields)
    for group in view.groups:
        for v in group.rows + group.folded:
            twin = TakeView(**{name: getattr(v, name) for name in names})
            assert twin == v and hash(twin) == hash(v)
    lenses = [(coverage.lens_label(lens), tuple(coverage.take_view(t, lens) for t in lens.takes)) for lens in brief.lenses]
    expected = sorted(
        (LensGroup(label, tuple(v for v in views if v.sentence), tuple(v for v in views if not v.sentence)) for label, views in lenses),
        key=lambda g: g.label == "",
    )
    assert view.groups == tuple(expected)
    assert list(view.regions) == region_counts_reference(brief) == coverage.region_counts(brief)
    assert list(view.lenses) == lens_counts_reference(brief.lenses)
    assert view.also == tuple(v for g in view.groups for v in g.folded)
    for limit in (0, 1, 2, 5, 10_000):
        assert coverage.capped(view.groups, limit) == capped_reference(view.groups, limit)
    for k in (0, 1, 2, 8):
        assert view.pick(k) is view.pick(k) and list(view.pick(k)) == coverage.pick(brief, k)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_sample_coverage_matches_the_slow_paths(path: Any) -> None:
    brief = parse_brief(path.read_bytes(), path.name, base_url=BASE)
    check_coverage(brief)
    # A fresh parse is a new Brief: nothing is served from the first one's memo
    # (briefs without takes share the empty tuple, and its empty coverage).
    if brief.lenses:
        assert coverage.of(parse_brief(path.read_bytes(), path.name, base_url=BASE)) is not coverage.of(brief)


@SETTINGS
@given(brief_text())
def test_generated_coverage_matches_the_slow_paths(source: str) -> None:
    brief = parsed(source)
    if brief is not None:
        check_coverage(brief)


# -- the story MJML's marked bodies ----------------------------------------------


def contexts_of(brief: Brief, cfg: Config, related_titles: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The MJML contexts render_story tries; a render that fails still gives the ones it tried."""
    out: list[tuple[str, dict[str, Any]]] = []
    try:
        email._story(brief, cfg, related_titles, sized=False, contexts=out)
    except RenderError:
        pass
    return [ctx for kind, ctx in out if kind == "mjml"]


def check_marked(brief: Brief) -> None:
    for cfg in CONFIGS:
        contexts = contexts_of(brief, cfg, {slug: f"<{slug}> & co" for slug in brief.related[:2]})
        assert contexts
        for ctx in contexts:
            pieces = story_mjml.story_pieces(ctx)
            source = "".join(pieces.parts)
            assert source == story_mjml.story_mjml(ctx)
            assert skeleton.split_marked(pieces.parts, pieces.slots) == skeleton.split(source)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_sample_marked_bodies_are_where_split_finds_them(path: Any) -> None:
    check_marked(parse_brief(path.read_bytes(), path.name, base_url=BASE))


@SETTINGS
@given(brief_text())
def test_generated_marked_bodies_are_where_split_finds_them(source: str) -> None:
    brief = parsed(source)
    if brief is not None:
        check_marked(brief)


def test_own_bodies_hold_only_canonical_tags() -> None:
    """What OWN promises, checked on the reference brief with a logo and without."""
    brief = parse_brief((DATA / "reference.txt").read_bytes(), "reference.txt", base_url=BASE)
    for cfg in CONFIGS:
        contexts = contexts_of(brief, cfg)
        pieces = story_mjml.story_pieces(contexts[0])
        own = [pieces.parts[i] for i, kind in pieces.slots if kind == skeleton.OWN]
        assert len(own) >= 8
        for body in own:
            assert skeleton._movable("text", body), body[:200]


# -- folding ---------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(["<p>", "</p>", "</td>", "<tr>", " ", "word ", "é", "中文", "\n", "y" * 1200, "é" * 700, "中" * 400, "<!--"]),
                min_size=1, max_size=200).map("".join))
def test_folding_the_encoded_html_matches_folding_line_by_line(html: str) -> None:
    folded, longest = mjml._fold_measured(html)
    by_line, longest_by_line = mjml._fold_measured_lines(html)
    assert folded == by_line
    # Lines up to FOLD_AT // 4 characters are measured in characters line by line.
    assert longest == longest_by_line or max(longest, longest_by_line) <= mjml.FOLD_AT


def test_a_lone_surrogate_folds_line_by_line() -> None:
    html = "<p>\ud800</p>\n" + "<p>" + "word " * 400 + "</p>"
    assert mjml._fold_measured(html) == mjml._fold_measured_lines(html)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(["<p>", "</p>", "</td>", " ", "word ", "é", "中文", "\n", "y" * 1200, "\U0001f44d" * 300]),
                min_size=1, max_size=120).map("".join))
def test_the_size_known_while_folding_is_the_encoded_size(html: str) -> None:
    try:
        out, octets = mjml.finish_html_sized(html, "t")
    except RenderError:
        return
    assert out == mjml.finish_html(html, "t") and octets == len(out.encode("utf-8"))


FOLD_PIECES = ["<p>", "</p>", "</td>", "<tr>", " ", "word ", "é", "中文", "\n", "y" * 1200, "é" * 700, "\U0001f44d" * 300,
               "<!--", "&amp;", '<a href="https://x.example/' + "q" * 950 + '">', "<title>", "</title>"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FOLD_PIECES), max_size=120).map("".join))
def test_html_octets_is_the_size_finish_html_gives_and_fails_as_it_does(html: str) -> None:
    # A build measures the email HTML only to know how many takes its web
    # text lists: html_octets must give finish_html_sized's size, and raise
    # where it raises (an unbreakable line), without making the string.
    try:
        _out, expected = mjml.finish_html_sized(html, "t")
    except RenderError as exc:
        with pytest.raises(RenderError) as raised:
            mjml.html_octets(html, "t")
        assert str(raised.value) == str(exc)
        return
    assert mjml.html_octets(html, "t") == expected


def test_html_octets_counts_the_newline_a_mime_body_ends_with() -> None:
    for html in ("", "<p>x</p>", "<p>x</p>\n", "<div>" + "word " * 500 + "</div>"):
        assert mjml.html_octets(html, "t") == mjml.finish_html_sized(html, "t")[1]


# -- the build's web text --------------------------------------------------------

TIGHT = build_config(site={"title": "World Briefs", "base_url": BASE}, email={"max_html_bytes": 20_000})


def check_web_text(brief: Brief) -> None:
    related = {slug: f"<{slug}> & co" for slug in brief.related[:2]}
    for cfg in (*CONFIGS, TIGHT):
        try:
            expected = email.web_text(email.render_story(brief, cfg, related_titles=related), cfg)
        except RenderError as exc:
            with pytest.raises(RenderError) as raised:
                email.story_web_text(brief, cfg, related_titles=related)
            assert str(raised.value) == str(exc)
            continue
        assert email.story_web_text(brief, cfg, related_titles=related) == expected


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_sample_web_text_without_the_html_is_the_web_text_of_the_issue(path: Any) -> None:
    check_web_text(parse_brief(path.read_bytes(), path.name, base_url=BASE))


@SETTINGS
@given(brief_text())
def test_generated_web_text_without_the_html_is_the_web_text_of_the_issue(source: str) -> None:
    brief = parsed(source)
    if brief is not None:
        check_web_text(brief)


def test_a_tight_budget_cuts_takes_from_the_web_text_too() -> None:
    # The case the measured HTML exists for: fewer takes fit, and the text lists the same fewer.
    brief = parse_brief((DATA / "reference.txt").read_bytes(), "reference.txt", base_url=BASE)
    roomy = email.story_web_text(brief, CONFIGS[0])
    tight = email.story_web_text(brief, TIGHT)
    assert tight == email.web_text(email.render_story(brief, TIGHT), TIGHT)
    assert tight.count("\n") < roomy.count("\n")
