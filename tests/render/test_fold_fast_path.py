"""The fold finds its cuts with one regex match per window, exactly where the walk it replaced did.

``fold_data_reference`` is the fold before that change (a Python walk back
over every '>' of the window), kept here as the specification: the cut
points, hence the number of cuts, must not move.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import re
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.render import mjml

_BREAK_BY_TAIL: dict[bytes, tuple[bytes, ...]] = {}
for _tag in mjml._BREAK_BYTES:
    _BREAK_BY_TAIL[_tag[-3:]] = (*_BREAK_BY_TAIL.get(_tag[-3:], ()), _tag)


def fold_data_reference(data: bytes) -> list[bytes]:
    """mjml._fold_data as it was: walk back over the '>' of each window to the last block-level tag end."""
    pieces: list[bytes] = []
    start = 0
    while len(data) - start > mjml.FOLD_AT:
        end = start + mjml.FOLD_AT
        cut = -1
        i = data.rfind(b">", start, end)
        while i > start:
            tags = _BREAK_BY_TAIL.get(data[i - 2 : i + 1])
            if tags is not None and data.endswith(tags, start, i + 1):
                cut = i + 1
                break
            i = data.rfind(b">", start, i)
        if cut > start:
            pieces.append(data[start:cut])
            start = cut
            continue
        space, text_pos = mjml.window_cut_points(data, start, end)
        if space > start:
            pieces.append(data[start:space])
            start = space
        elif text_pos > start:
            pieces.append(data[start:text_pos] + b"<!--")
            data = data[:text_pos] + b"-->" + data[text_pos:]
            start = text_pos
        else:
            break
    pieces.append(data[start:])
    return pieces


def fold_sized_reference(html: str) -> tuple[str, int, int]:
    """mjml._fold_sized as it was: each long line folded and joined, then the document joined."""
    try:
        data = html.encode()
    except UnicodeEncodeError:
        return (*mjml._fold_measured_lines(html), -1)
    lines = data.split(b"\n")
    sizes = list(map(len, lines))
    if max(sizes) <= mjml.FOLD_AT:
        return html, max(sizes), len(data)
    for i in [i for i, size in enumerate(sizes) if size > mjml.FOLD_AT]:
        pieces = fold_data_reference(lines[i])
        lines[i] = b"\n".join(pieces)
        sizes[i] = max(map(len, pieces))
    data = b"\n".join(lines)
    return data.decode(), max(sizes), len(data)


@contextmanager
def folding_with(fold: Callable[[bytes], list[bytes]]) -> Iterator[None]:
    fast = mjml._fold_data
    mjml._fold_data = fold  # type: ignore[assignment]
    try:
        yield
    finally:
        mjml._fold_data = fast


# Every break tag, near misses of them (attributes, case, a missing '/',
# halves that a window edge can split), text that must not be cut (<title>,
# <style>, entities, comments), CJK without spaces, huge words and tags.
TAGS = [t.decode() for t in mjml._BREAK_BYTES]
NEAR = ["</td >", "</TD>", "<td>", "</t", "d>", "<!", "[endif]-->", "<![endif]", "-->", "<!--", "<![endif]-- >", "</tbody",
        "<tr class=\"x\">", "</p", "p>", ">", "<", "</", "/>", "<tbody x>", "<trx>", "</tr>>", "<</td>"]
TEXT = [" ", "word ", "a", "b c", "&amp;", "&nbsp;", "&#847;&zwnj;", "&", ";", "é", "中文", "日本語の文章", "😀", "·", "→",
        "<title>", "</title>", "<style>", "<STYLE x>", "</style>", "<a href=\"x y\">", "</a>", "<span style=\"a b\">", "</span>",
        "x" * 300, "中" * 200, "東京" * 150, "<div style=\"" + "a:b;" * 120 + "\">", "y" * 1000, "\n"]
PIECES = st.sampled_from(TAGS + NEAR + TEXT)
LINES = st.lists(PIECES, min_size=20, max_size=400).map("".join)
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(LINES)
def test_the_regex_fold_cuts_where_the_walk_did(line: str) -> None:
    data = line.replace("\n", " ").encode()
    assert mjml._fold_data(data) == fold_data_reference(data)


@SETTINGS
@given(LINES)
def test_folded_html_and_its_sizes_are_unchanged(html: str) -> None:
    fast = mjml._fold_sized(html)
    assert fast == fold_sized_reference(html)
    with folding_with(fold_data_reference):
        assert fast == mjml._fold_sized(html)


@SETTINGS
@given(st.lists(st.sampled_from(TAGS + ["a" * 7, "b" * 13, " ", "中", "&amp;"]), min_size=100, max_size=600).map("".join))
def test_dense_break_tags_cut_where_the_walk_did(line: str) -> None:
    """Break tags straddling a window's start or end, at every offset."""
    data = line.encode()
    assert mjml._fold_data(data) == fold_data_reference(data)


@pytest.mark.parametrize("shift", range(0, 24))
def test_a_break_tag_across_each_window_edge(shift: int) -> None:
    for tag in mjml._BREAK_BYTES:
        data = (b"x" * (mjml.FOLD_AT - shift) + tag + b" y") * 4 + b"<p>" + "中".encode() * 700
        assert mjml._fold_data(data) == fold_data_reference(data)


def test_a_lone_surrogate_still_folds_line_by_line() -> None:
    html = "<td>\udc00</td>\n<p>" + "</td>x" * 400 + "</p>"
    assert mjml._fold_sized(html) == fold_sized_reference(html)


def test_the_break_pattern_matches_exactly_the_break_tags() -> None:
    tags = mjml._BREAK_BYTES
    assert not any(a != b and b.startswith(a) for a in tags for b in tags)  # prefix-free, as _trie needs
    alone = re.compile(mjml._trie(list(tags)))
    assert all(alone.fullmatch(tag) for tag in tags)
    for tag in tags:
        for cut in range(1, len(tag)):
            assert not alone.fullmatch(tag[:cut]) and not alone.fullmatch(tag[cut:])
        assert not alone.fullmatch(tag.upper()) or tag.upper() == tag
    assert mjml._trie([b"ab>", b"ac>", b"b>"]) == rb"(?:a(?:b>|c>)|b>)"
