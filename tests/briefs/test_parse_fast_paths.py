"""The parser's shortcuts give what the code they replaced gave.

Where a regex or library call was replaced by string methods, the old form
is kept here as the oracle (each is a line or two); the rewritten take
parser is checked against takes written from known fields, and against the
goldens and generated briefs through tests/briefs/test_briefs*.py.
"""

from __future__ import annotations

import re
import sys
from pathlib import PurePosixPath
from urllib.parse import urljoin

from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.briefs.inline import (
    FORBIDDEN_CONTROLS, OTHER_SPACE, PLAIN_HTTP_TOKEN, PLAIN_HTTP_URL, Context, has_forbidden_controls, is_plain, markup_count, plain, strip_quotes,
)
from publisher.briefs.parse import last_segment
from publisher.briefs.sections import heading, parse_takes, section_kind, source_of

# The regexes the heading test replaced (issue 17): a lazy group before an optional closing run.
_OLD_HEADINGS = {n: re.compile(rf"^{'#' * n}(?!#)\s+(.*?)\s*#*\s*$") for n in (1, 2, 3)}
_OLD_SOURCE = re.compile(r"^Source:\s*(\S*)\s*$", re.IGNORECASE)
_OLD_PLAIN_AS_IS = re.compile(r"[*_`\\&\[]|\s\s|[^\S ]")

_HEADING_BITS = ["#", "##", "###", "####", " ", "  ", "\t", "\u00a0", "\u3000", "a", "b c", "#a", "é", "\n"]


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(_HEADING_BITS), max_size=10).map("".join))
def test_heading_matches_the_heading_regexes(line: str) -> None:
    line = line.replace("\n", "")  # lines never hold one
    found = heading(line)
    for level, regex in _OLD_HEADINGS.items():
        m = regex.match(line)
        expected = m.group(1) if m else None
        assert (found[1] if found is not None and found[0] == level else None) == expected, (line, level)


def test_other_space_is_every_whitespace_character_but_the_space() -> None:
    chars = "".join(map(chr, range(sys.maxunicode + 1)))
    assert re.findall(f"[{OTHER_SPACE}]", chars) == re.findall(r"[^\S ]", chars)


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(["a", " ", "  ", "\t", "\xa0", "\u2028", "\u3000", "*", "_", "`", "\\", "&", "[", "]", "é", "中"]), max_size=8).map("".join))
def test_is_plain_matches_the_old_alternation(text: str) -> None:
    assert is_plain(text) == (_OLD_PLAIN_AS_IS.search(text) is None)


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=40))
def test_markup_count_counts_as_str_count_did(text: str) -> None:
    assert markup_count(text) == sum(map(text.count, "\\`*_[]<>&!"))


def _old_section_kind(title: str) -> str | None:
    norm = re.sub(r"\s+", " ", title.strip().lower())
    for prefix, kind in {"summary": "summary", "why it matters": "why", "what to watch": "watch",
                         "regional takes": "takes", "across the graph": "graph"}.items():
        if norm == prefix or norm.startswith(prefix + " ") or norm.startswith(prefix + "("):
            return kind
    return None


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(["Summary", "summary", "Why", " it", "  matters", "What to watch", "Regional", "\ttakes",
                                 "(", " ", "\u00a0", "x", "Across the graph", "S", "İ"]), max_size=6).map("".join))
def test_section_kind_matches_the_old_normalisation(title: str) -> None:
    assert section_kind(title) == _old_section_kind(title)


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet=st.sampled_from(["a", "é", "\n", "\t", "\r", "\x00", "\x07", "\x0b", "\x1f", "\x7f", "\ufffe", "\uffff", "\ufeff", "中"]), max_size=12))
def test_control_check_matches_the_regex(text: str) -> None:
    assert has_forbidden_controls(text.encode("utf-8"), text) == (FORBIDDEN_CONTROLS.search(text) is not None)


@settings(max_examples=2000, deadline=None)
@given(
    st.sampled_from(["Source:", "source:", "SOURCE:", "Sources:", "Source :", "ſource:"]),
    st.sampled_from(["", " ", "  ", "\t"]),
    st.lists(st.sampled_from(["https://", "HTTP://", "http://", "a", "b.c", "-", ":80", ":123456", "/p", "?q", "#f", "@", " ", "é", "K", "[", "x/"]), max_size=6).map("".join),
)
def test_source_line_matches_the_old_regex_and_the_url_check(label: str, gap: str, rest: str) -> None:
    line = (label + gap + rest).strip()
    if line[:1] not in "Ss":
        return  # parse_takes asks only about lines starting so
    old, new = _OLD_SOURCE.match(line), source_of(line)
    assert (old is None) == (new is None), line
    if old is not None and new is not None:
        assert new == (old.group(1), PLAIN_HTTP_URL.match(old.group(1)) is not None)


def test_the_source_label_folds_case_as_the_regex_did() -> None:
    chars = "".join(map(chr, range(sys.maxunicode + 1)))
    lowered = {c: {x for x in chars if x.lower() == c} for c in "ource:"}
    for c, expected in lowered.items():
        assert set(re.findall(re.escape(c), chars, re.IGNORECASE)) == expected, c


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(["https://", "http://", "a", "Z.b", "-", ":80", ":123456", "/p", "?q", "#f", "@", "é", "\n", "\x85", "[", "x/"]), max_size=8).map("".join))
def test_the_token_url_check_is_the_url_check_on_text_without_whitespace(url: str) -> None:
    if not url.split(None, 1) == [url]:
        return
    assert (PLAIN_HTTP_TOKEN.match(url) is None) == (PLAIN_HTTP_URL.match(url) is None)


@settings(max_examples=2000, deadline=None)
@given(
    st.sampled_from(["https://h.example/", "http://H.example:8080/", "https://u@h/", "https://h.example/x/", "HTTPS://h/", "https://[::1]/", "https://h"]),
    st.lists(st.sampled_from(["/", "//", "a", "b.c", ".", "..", "-", "_", "~", "%41", "?q", "#f", ";p", "é", " ", ":"]), min_size=1, max_size=8).map("".join),
)
def test_relative_links_resolve_as_urljoin_does(base: str, raw: str) -> None:
    ctx = Context("p", base)
    url = ctx.safe_url(raw, 1, "link")
    if url is not None and not ctx.findings and not raw.strip().startswith(("http:", "https:")):
        assert url == urljoin(base, raw.strip())


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(["", "/", "//", ".", "..", "a", "b.md", " "]), max_size=8).map("".join))
def test_last_segment_is_the_path_name(path: str) -> None:
    assert last_segment(path) == PurePosixPath(path).name


_FIELD = st.lists(st.sampled_from(["Outlet", "The Times", "*em*", "a_b", "`c`", "中文", "&", "  ", "x"]), min_size=1, max_size=3).map(" ".join)


@st.composite
def _take(draw: st.DrawFn) -> tuple[str, dict[str, object]]:
    outlet = draw(_FIELD).replace("*", "").strip() or "Outlet"
    region, lang = draw(st.sampled_from([("", ""), ("United States", "en"), ("Hong Kong / China", "zh"), ("X", ""), ("*A*", "b")]))
    paren = "" if not region else f" ({region}, {lang})" if lang else f" ({region})"
    text = draw(st.sampled_from(["", "Plain words.", 'Says "so".', "[a link](https://l.example/x)"]))
    quote = draw(st.sampled_from([None, '"Quoted."', "“Curly”", "plain quote"]))
    source = draw(st.sampled_from([None, "https://s.example/a?b=1&c=2", "HTTPS://S.example/", "/relative/path", "javascript:x"]))
    lines = [f"- **{outlet}**{paren} — {text}"]
    if quote is not None:
        lines.append(f"  > {quote}")
    if source is not None:
        lines.append(f"  Source: {source}")
    ctx = Context("p", "https://base.example/")
    expected = {
        "outlet": plain(outlet), "region": plain(region), "language": plain(lang),
        "text": ctx.rich_inline(text, 1), "quote": strip_quotes(quote) if quote else None,
        "source": ctx.safe_url(source, 1, "source URL") if source else None,
    }
    return "\n".join(lines), expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["US press", "*Gulf* press", "unlabelled"]), st.lists(_take(), min_size=1, max_size=4)), min_size=1, max_size=3))
def test_takes_parse_into_the_fields_they_were_written_from(lenses: list[tuple[str, list[tuple[str, dict[str, object]]]]]) -> None:
    text = "\n\n".join(f"### {name}\n" + "\n".join(t for t, _ in takes) for name, takes in lenses)
    body = list(enumerate(text.split("\n"), start=10))
    parsed = parse_takes(body, Context("p", "https://base.example/"))
    assert [lens.name for lens in parsed] == [plain(name) for name, _ in lenses]
    for lens, (_, takes) in zip(parsed, lenses, strict=True):
        got = [{f: getattr(take, f) for f in ("outlet", "region", "language", "text", "quote", "source")} for take in lens.takes]
        assert got == [expected for _, expected in takes]

