"""The plain text's fast paths write what the regex paths they replaced write.

``wrap`` cuts a one-paragraph value with str.rfind rather than the line
regex, and skips re-spacing a value that is already single spaced; the
regex (``text._line_pattern``) and ``wrap_reference`` stay the specification.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.render import text
from tests.render.test_render_fast_paths import wrap_reference

SETTINGS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# Every character str.split() splits at, and characters around them that it does not.
SPACES = [" ", "  ", "\t", "\xa0", "\u2028", "\u2029", "\x1c", "\x1f", "\x85", "\u3000", "\u200a", "\u202f", "\x0b", "\r", "\u200b", "\ufeff"]
WORDS = st.one_of(
    st.integers(1, 90).map(lambda n: "w" * n),
    st.sampled_from(["a", "to", "é", "中文", "·", "[3]", "https://example.org/" + "p" * 80, "e\u0301", "\U0001f44d"]),
)
LINE = st.lists(st.tuples(WORDS, st.sampled_from(SPACES)), max_size=25).map(lambda ws: "".join(w + s for w, s in ws))
INDENTS = st.sampled_from([("", None), ("* ", "  "), ("  * ", "    "), ("  ", "  "), ("", ""), ("x" * 60, None)])


@SETTINGS
@given(LINE, st.sampled_from([72, 40, 21, 20, 10]), INDENTS)
def test_one_paragraph_wraps_as_the_regex_did(value: str, width: int, indents: tuple[str, str | None]) -> None:
    indent, subsequent = indents
    for v in (value, value.strip(), " " + value):
        assert text.wrap(v, width, indent, subsequent) == wrap_reference(v, width, indent, subsequent)


@SETTINGS
@given(st.lists(WORDS.filter(lambda w: " " not in w), min_size=1, max_size=30).map(" ".join), st.integers(1, 100))
def test_fill_words_finds_what_the_line_regex_finds(words: str, room: int) -> None:
    assert text._fill_words(words, room) == text._line_pattern(room).findall(words)


def test_a_word_exactly_the_room_long_and_one_longer() -> None:
    for n in (19, 20, 21, 71, 72, 73):
        value = " ".join(["a" * n, "b" * (72 - n), "c", "d" * 200, "e"])
        assert text.wrap(value) == wrap_reference(value)
        assert text.wrap(value, 20, "* ", "  ") == wrap_reference(value, 20, "* ", "  ")


def underline_reference(wrapped: str, char: str) -> str:
    longest = max((text.columns(line) for line in wrapped.splitlines()), default=0)
    return char * min(max(longest, 3), text.TEXT_WIDTH)


@SETTINGS
@given(st.lists(st.sampled_from([*SPACES, "\n", "a", "中文", "x" * 40, "é", "\x0c", "\u2029"]), max_size=20).map("".join))
def test_the_underline_of_one_line_is_measured_as_the_split_did(wrapped: str) -> None:
    assert text.underline_wrapped(wrapped, "=") == underline_reference(wrapped, "=")
    assert text.underline(wrapped, "-") == underline_reference(text.wrap(wrapped), "-")
