"""The parser's shortcuts give what the code they replaced gave.

Where a regex or library call was replaced by string methods, the old form
is kept here as the oracle (each is a line or two); the rewritten take
parser is checked against takes written from known fields, and against the
goldens and generated briefs through tests/briefs/test_briefs*.py.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urljoin, urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.briefs import model, parse, sections
from publisher.briefs.frontmatter import decode
from publisher.briefs.inline import (
    FORBIDDEN_CONTROLS, OTHER_SPACE, PLAIN_HTTP_TOKEN, PLAIN_HTTP_URL, Context, has_forbidden_controls, is_plain, markup_count, origin, plain,
    strip_quotes,
)
from publisher.briefs.model import Link, Rich, Take
from publisher.briefs.parse import last_segment
from publisher.briefs.sections import heading, parse_takes, section_kind, source_of
from publisher.core.errors import BriefError

# The regexes the heading test replaced (issue 17): a lazy group before an optional closing run.
_OLD_HEADINGS = {n: re.compile(rf"^{'#' * n}(?!#)\s+(.*?)\s*#*\s*$") for n in (1, 2, 3)}
_OLD_SOURCE = re.compile(r"^Source:\s*(\S*)\s*$", re.IGNORECASE)
_OLD_PLAIN_AS_IS = re.compile(r"[*_`\\&\[]|\s\s|[^\S ]")

# The thematic-break regex sections.is_rule replaced (its per-marker backtracking
# made a 500k-marker line cost four times as much per byte as a 100k one).
_OLD_RULE = re.compile(r"^\s{0,3}(?:-\s*){3,}$|^\s{0,3}(?:\*\s*){3,}$|^\s{0,3}(?:_\s*){3,}$")
_RULE_BITS = ["-", "*", "_", "--", "**", " ", "  ", "\t", "\u00a0", "\u3000", "\r", "\x0b", "a", "+", "\n"]


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(_RULE_BITS), max_size=12).map("".join))
def test_is_rule_is_the_regex(text: str) -> None:
    assert sections.is_rule(text) == (_OLD_RULE.match(text) is not None)


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



# -- take heads and source lines read by the common shape's regex ---------------

# Mostly what the fast path takes, with every character it must refuse now and then.
_PLAIN_BITS = st.sampled_from(["Atlas", "Weekly", "é", "中文", "A.B", "x-y", "]", "!", "<", "'"])
_HOSTILE_BITS = st.sampled_from(["(", ")", ",", "*", "**", "_", "`", "\\", "&", "[", "", "  ", "\t", "\u00a0", "\u3000", "\x85"])
_words = st.lists(st.one_of(_PLAIN_BITS, _PLAIN_BITS, _PLAIN_BITS, _HOSTILE_BITS), min_size=0, max_size=4).map(" ".join)
_gap = st.sampled_from([" ", " ", " ", " ", "", "  ", "\t", "\u3000"])


@st.composite
def _head_line(draw: st.DrawFn) -> str:
    marker = draw(st.sampled_from(["-", "*", "+"])) + draw(st.sampled_from([" ", " ", "  ", "\t", ""]))
    outlet = draw(st.sampled_from(["Atlas Weekly", "中文 News"]) | _words)
    paren = draw(st.sampled_from(["(Nigeria, en)", "(United Kingdom, fr)", "(Hong Kong / China, zh-Hant)"]) | st.builds(
        lambda r, g, lang: f"({r},{g}{lang})", _words, _gap, _words) | st.sampled_from(["", "(x)", "((a), b)", "(a, b, c)"]))
    dash = draw(st.sampled_from(["—", "—", "—", "–", "--", "-", "---", "", "— —"]))
    text = draw(st.sampled_from(["", "The words.", "  spaced  ", "**bold** x", "(aside) y"]))
    return f"{marker}**{outlet}**{draw(_gap)}{paren}{draw(_gap)}{dash}{draw(_gap)}{text}"


@settings(max_examples=4000, deadline=None)
@given(_head_line())
def test_plain_take_heads_read_as_take_head_reads_them(line: str) -> None:
    fast = sections._TAKE_PLAIN.match(line)
    if fast is not None:
        assert fast.groups() == sections.take_head(line), line


_COMMON_HEADS = ["- **Atlas Weekly** (Nigeria, en) — The words.", "- **Union Bulletin** (United Kingdom, fr) —",
                 "* **Le Monde** (France, fr) -- Mots.", "- **A** (Hong Kong / China, zh-Hant) – x"]
# Near misses: each differs from a common head where the fast path must refuse or agree.
_EDGE_HEADS = ["- **A** (b, c,d) — x", "- **A** (b,c, d) — x", "- **A** (b, c, d) — x", "- **A** (b, c) --- x", "- **A** (b, c) -- -x",
               "- **A** (b, c)\t—\tx", "- **A**\t(b, c) — x", "- **A** (b,  c) — x", "- **A ** (b, c) — x", "- **A*** (b, c) — x",
               "- ***A** (b, c) — x", "- **A** ((b), c) — x", "- **A** (b, c)) — x", "- **A** (b, c) —", "- **A** (b, c)",
               "-\u3000**A** (b, c) — x", "- **A\u00a0B** (b, c) — x", "- **A** (b\x85, c) — x", "- **A** (b, `c`) — x"]


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(_COMMON_HEADS), st.lists(st.tuples(st.integers(0, 45), _HOSTILE_BITS | _PLAIN_BITS | _gap), min_size=1, max_size=3))
def test_common_heads_with_a_stray_character_read_as_take_head_reads_them(line: str, edits: list[tuple[int, str]]) -> None:
    for at, bit in edits:
        line = line[:at] + bit + line[at:]
    fast = sections._TAKE_PLAIN.match(line)
    if fast is not None:
        assert fast.groups() == sections.take_head(line), line


def test_the_plain_take_head_regex_takes_the_common_heads() -> None:
    for line in _COMMON_HEADS:
        fast = sections._TAKE_PLAIN.match(line)
        assert fast is not None and fast.groups() == sections.take_head(line), line
    for line in _EDGE_HEADS:
        fast = sections._TAKE_PLAIN.match(line)
        assert fast is None or fast.groups() == sections.take_head(line), line


_URL_PATH = st.lists(st.sampled_from(["/p", "/", "?q=1&b", "#f", "@", " ", "\u00a0", "\t", "é", "[", "x", ""]), max_size=4).map("".join)


@settings(max_examples=3000, deadline=None)
@given(
    st.sampled_from(["Source: ", "Source:", "Source:  ", "source: ", "Source:\t", "Source: \u00a0"]),
    st.builds("".join, st.tuples(
        st.sampled_from(["https://", "http://", "HTTP://", "ftp://", "https:/", ""]),
        st.sampled_from(["www.a.example", "a", "a-b.c", "-a", "a.", "é.example", "[::1]", "u@h", ""]),
        st.sampled_from(["", "", ":80", ":123456", ":", ":x"]),
        _URL_PATH,
    )),
)
def test_plain_source_lines_read_as_source_of_reads_them(label: str, rest: str) -> None:
    line = (label + rest).strip()
    fast, slow = sections._SOURCE_PLAIN.match(line), source_of(line)
    if fast is not None:
        assert (fast.group(1), True) == slow, line
    # It takes every line written "Source: <plain http(s) URL>".
    assert (fast is not None) == (line[:8] == "Source: " and slow is not None and slow == (line[8:], True)), line


# -- values built through their slots --------------------------------------------

_TEXT = st.text(max_size=5)


@settings(max_examples=300, deadline=None)
@given(_TEXT, _TEXT, st.lists(st.builds(Link, _TEXT, _TEXT), max_size=2).map(tuple), _TEXT, _TEXT, st.none() | _TEXT, st.none() | _TEXT,
       st.integers())
def test_rich_and_take_build_what_the_constructors_build(html: str, text: str, links: tuple[Link, ...], outlet: str, region: str,
                                                         quote: str | None, source: str | None, line: int) -> None:
    value = model.rich(html, text, links)
    assert value == Rich(html, text, links) and model.rich(html, text) == Rich(html, text)
    built = model.take(outlet, region, text, value, quote, source, line)
    assert built == Take(outlet, region, text, value, quote, source, line)
    assert [getattr(built, f.name) for f in dataclasses.fields(Take)] == [outlet, region, text, value, quote, source, line]
    assert hash(built) == hash(Take(outlet, region, text, value, quote, source, line))


# -- the outline ------------------------------------------------------------------

def _old_outline(lines: list[str], body_start: int, ctx: Context) -> Any:
    """parse._outline before it skipped the lines that cannot be structure: every line tested."""
    out = parse._Outline()
    preamble: list[tuple[int, str]] = []
    body: list[tuple[int, str]] | None = None
    old_sections: list[tuple[str, int, list[tuple[int, str]]]] = []
    for idx in range(body_start, len(lines)):
        line = lines[idx]
        first = line[:1]
        if first == "#":
            head = heading(line)
            if head is not None and head[0] <= 2:
                if head[0] == 1:
                    if out.title is None:
                        out.title, out.title_line = plain(head[1]), idx + 1
                        continue
                    ctx.warn(idx + 1, "second '# ' title treated as an unknown section")
                body = []
                old_sections.append((head[1], idx + 1, body))
                continue
        elif first == "*":
            meta = parse._META.match(line.rstrip())
            if meta:
                if out.meta_raw is not None:
                    ctx.warn(idx + 1, "second Meta line ignored")
                else:
                    out.meta_raw = (meta.group(1), idx + 1)
                continue
        elif first == "C" or first == "c":
            canon = sections._CANONICAL.match(line)
            if canon:
                out.canonical_raw = (canon.group(1), idx + 1)
                continue
        if body is not None:
            body.append((idx + 1, line))
        else:
            parse._preamble_line(out, preamble, idx + 1, line)
    if preamble:
        ctx.warn(preamble[0][0], "text before the first section is ignored")
    out.sections = old_sections  # type: ignore[assignment]
    return out


_OUTLINE_LINES = ["# Title", "# Second *title*", "## Summary", "## Regional takes", "##", "## ", "###", "### lens", "#### deep", "#x", " # indented",
                  "**Meta:** date: 2025-01-01", "**meta:**x", "**Meta**", "* item", "*", "Canonical: https://a.example/x", "canonical:  y z", "canonical: https://b.example/",
                  "Canonical:", "C", "Cats.", "cc", "> dek", ">", "---", "***", "text", "- **A** (b, c) — x", "", " ", "\t"]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(_OUTLINE_LINES), max_size=14), st.integers(0, 3))
def test_the_outline_is_what_testing_every_line_gave(lines: list[str], body_start: int) -> None:
    body_start = min(body_start, len(lines))
    new_ctx, old_ctx = Context("p", None), Context("p", None)
    new, old = parse._outline(lines, body_start, new_ctx), _old_outline(lines, body_start, old_ctx)
    # The same lines in each section, as (line number, line) pairs; no empty run kept.
    assert [(title, n, list(sections.numbered(body))) for title, n, body in new.sections] == old.sections
    assert all(run for _, _, body in new.sections for _, run in body)
    assert dataclasses.replace(new, sections=[]) == dataclasses.replace(old, sections=[])
    assert new_ctx.findings == old_ctx.findings


@settings(max_examples=2000, deadline=None)
@given(st.builds("".join, st.tuples(
    st.sampled_from(["https://", "http://", "HTTPS://", "https:/", "ftp://"]),
    st.sampled_from(["a.example", "A-b.example", "x", "a.", "-a", "é.x", "u@h", "[::1]", ""]),
    st.sampled_from(["", ":8080", ":", ":123456"]),
    st.lists(st.sampled_from(["/", "/en", "/n/", "slug-1", "?q=1", "#f", "%41", ";p", "//", ".."]), max_size=5).map("".join),
)))
def test_a_plain_url_splits_as_urlsplit_splits_it(url: str) -> None:
    split = parse.split_plain(url)
    assert (split is not None) == (PLAIN_HTTP_TOKEN.match(url) is not None)
    if split is not None:
        assert split == (origin(url), urlsplit(url).path)


def _old_decode(data: bytes) -> str:
    if not data.strip():
        raise BriefError("p", 1, "empty file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BriefError("p", line, f"not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})") from exc
    return text.replace("\r\n", "\n").replace("\r", "\n")


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from([b"\xef\xbb\xbf", b"\xef\xbb", b"a", b"\n", b"\r\n", b"\r", b" ", b"\xc3\xa9", b"\xc3", b"\xff", b"\x80", b"\xe4\xb8\xad"]),
                max_size=8).map(b"".join))
def test_decoding_is_what_utf_8_sig_gives(data: bytes) -> None:
    def outcome(fn: Any) -> Any:
        try:
            return fn()
        except BriefError as exc:
            return (exc.line, str(exc))
    assert outcome(lambda: decode(data, "p")) == outcome(lambda: _old_decode(data))
