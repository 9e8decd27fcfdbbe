"""Property tests: whatever bytes arrive, the parser returns a Brief or raises BriefError."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.briefs import lint, parse_brief
from publisher.briefs.inline import _NORMAL_LINK, _md, _plain_markup, plain
from publisher.core.errors import BriefError
from publisher.briefs.model import Brief

from tests.support.files import DATA, SAMPLES

VALID = [p.read_bytes() for p in sorted((DATA / "briefs").iterdir())] + [
    p.read_bytes() for p in sorted(SAMPLES.iterdir())
]

# Fragments that exercise the grammar: markers, markup, hostile URLs, odd bytes.
FRAGMENTS = [
    "---\n", "# ", "## ", "### ", "> ", "- **", "** (", ", en) — ", "\n  Source: ", "javascript:alert(1)",
    "[x](", ")", "[[", "]]", "**Meta:** ", " · ", "date: 2026-01-01", "Canonical: ", "<script>", "&nbsp;",
    "]]>", "\r\n", "\ufeff", "\x00", "title: [", "slug: ../x", "\n", "\t", "`", "![i](data:x)", "ä中", "{{", "%%",
]


def _check(data: bytes) -> None:
    try:
        brief = parse_brief(data, "fuzz.md", base_url="https://base.example/")
    except BriefError as exc:
        assert exc.path == "fuzz.md"
        assert exc.line is None or exc.line >= 1
        return
    assert isinstance(brief, Brief)
    assert brief.title and brief.slug
    for rich in (brief.summary, brief.why_it_matters, *brief.what_to_watch):
        assert "<script" not in rich.html


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4000))
def test_arbitrary_bytes(data: bytes) -> None:
    _check(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=3000))
def test_arbitrary_text(text: str) -> None:
    _check(text.encode("utf-8"))


@st.composite
def mutated_brief(draw: st.DrawFn) -> bytes:
    data = draw(st.sampled_from(VALID))
    lines = data.split(b"\n")
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["delete", "duplicate", "insert", "replace", "truncate", "swap"]))
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        if op == "delete" and len(lines) > 1:
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "insert":
            lines.insert(i, draw(st.sampled_from(FRAGMENTS)).encode() + draw(st.binary(max_size=20)))
        elif op == "replace":
            line = lines[i]
            j = draw(st.integers(0, len(line)))
            lines[i] = line[:j] + draw(st.sampled_from(FRAGMENTS)).encode() + line[j:]
        elif op == "truncate":
            cut = draw(st.integers(0, len(b"\n".join(lines))))
            lines = b"\n".join(lines)[:cut].split(b"\n")
        elif op == "swap":
            j = draw(st.integers(0, max(0, len(lines) - 1)))
            lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_brief())
def test_mutated_valid_briefs(data: bytes) -> None:
    _check(data)


@settings(max_examples=100, deadline=None)
@given(mutated_brief())
def test_lint_never_raises_other_errors(data: bytes) -> None:
    try:
        brief, findings = lint(data, "fuzz.md")
    except BriefError:
        return
    errors = [f for f in findings if f.severity == "error"]
    assert (brief is None) == bool(errors)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.sampled_from(["a", "b c", " ", "\n", "[", "]", "(", ")", "/x", "https://h.example/p", "é", "<", "&", "*", "\"", "'", ".", "javascript:x"]),
        max_size=25,
    ).map("".join)
)
def test_inline_fast_paths_match_markdown_it(source: str) -> None:
    # The plain-text and simple-link shortcuts must give exactly what the
    # general markdown-it path gives, or output would depend on the path taken.
    from publisher.briefs.inline import Context as _Ctx

    source = "\n".join(line.strip() for line in source.strip().split("\n"))
    fast = _Ctx("p", "https://base.example/").rich_inline(source, 1)
    slow = _Ctx("p", "https://base.example/").markdown_inline(source, 1)
    assert fast == slow


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(["a", " ", "  ", "\t", "\n", "\xa0", "\u2028", "*", "_", "`", "\\", "&", "[", "]", "!", "<", "x y"]), max_size=12).map("".join))
def test_plain_fast_path_matches_the_markdown_path(text: str) -> None:
    assert plain(text) == _plain_markup(text.strip())


@settings(max_examples=2000, deadline=None)
@given(
    st.sampled_from(["http://", "https://", "HTTP://", "https://a", "http://a.b"]),
    st.text(alphabet="abcXYZ019.-:/?#;&=+$,_!~*'()@%[]\\ é\"<>`{}|^", max_size=30),
)
def test_links_markdown_it_leaves_alone_skip_its_normaliser(scheme: str, rest: str) -> None:
    url = scheme + rest
    if _NORMAL_LINK.fullmatch(url):
        assert _md.normalizeLink(url) == url
