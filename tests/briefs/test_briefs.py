"""The brief parser: golden files, the reference brief, every error, every construct."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.briefs import lint, parse_brief, slugify
from publisher.core.errors import BriefError
from publisher.briefs.serialize import brief_to_dict

from tests.support.files import DATA, GOLDEN, ROOT, SAMPLES, assert_golden

FIXTURES = sorted((DATA / "briefs").iterdir())


def _golden_json(path: Path) -> str:
    brief, findings = lint(path.read_bytes(), path.name, base_url="https://base.example/")
    payload = {
        "brief": brief_to_dict(brief) if brief else None,
        "findings": [str(f) for f in findings],
    }
    return json.dumps(payload, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("path", FIXTURES, ids=[p.name for p in FIXTURES])
def test_golden(path: Path) -> None:
    assert_golden(GOLDEN / "briefs" / (path.stem + ".json"), _golden_json(path))


def test_reference_brief_counts() -> None:
    brief = parse_brief((DATA / "reference.txt").read_bytes(), "reference.txt")
    assert brief.take_count == 17
    assert len(brief.lenses) == 6
    assert len(brief.regions) == 8
    assert brief.meta.count("takes") == 17 and brief.meta.count("lenses") == 6 and brief.meta.count("regions") == 8
    assert brief.findings == ()
    assert brief.slug == "anthropic-alibaba-claude-distillation"
    assert brief.canonical == "https://rbtfl.xyz/en/n/anthropic-alibaba-claude-distillation"
    assert brief.meta.heads == ("Whose Money", "What They're Not Saying")
    # Relative links resolve against the canonical URL's origin.
    assert '<a href="https://rbtfl.xyz/en/entity/anthropic">Anthropic</a>' in brief.summary.html
    assert brief.related[0] == "anthropic-series-h-ipo-2026"
    assert brief.entities == ("Anthropic", "Alibaba Qwen", "Openai")
    unlabelled = brief.lenses[1]
    assert unlabelled.name == "unlabelled" and len(unlabelled.takes) == 12
    assert all(not t.text for t in unlabelled.takes)
    assert unlabelled.takes[2].region == "Netherlands / global"
    first = brief.lenses[0].takes[0]
    assert (first.outlet, first.region, first.language) == ("CNBC", "United States", "en")
    assert first.quote is not None and first.quote.startswith("Alibaba ran 28.8 million")
    assert first.line == 24


def test_crlf_and_bom_parse_like_lf() -> None:
    brief = parse_brief((DATA / "briefs" / "crlf_bom.md").read_bytes(), "crlf_bom.md")
    assert brief.title == "CRLF brief with a BOM"
    assert "\r" not in brief.summary.text
    assert brief.summary.text == "Line one of the summary continues here."
    assert brief.what_to_watch[1].text == "Second item continued on the next line"
    assert brief.lenses[0].takes[0].quote == "Une citation."


def test_hostile_fields_are_escaped_and_links_dropped() -> None:
    brief, findings = lint((DATA / "briefs" / "hostile.md").read_bytes(), "hostile.md")
    assert brief is not None
    everything = json.dumps(brief_to_dict(brief))
    # No live markup anywhere in rendered HTML fields.
    for rich in [brief.summary, brief.why_it_matters, *brief.what_to_watch, *(t.text for t in brief.takes)]:
        assert "<script" not in rich.html and "<iframe" not in rich.html and "<img" not in rich.html
        assert "javascript:" not in rich.html.lower() and "data:" not in rich.html and "vbscript:" not in rich.html
    assert "evil.example/pixel" not in everything
    assert brief.canonical == "https://example.org/n/hostile-brief"  # body canonical used; the FM one was unsafe
    messages = [f.message for f in findings]
    assert sum("dropped unsafe link" in m for m in messages) == 5
    assert any("dropped unsafe canonical" in m for m in messages)
    assert brief.takes[0].source is None and brief.takes[1].source is None
    assert brief.takes[2].source == "https://example.org/relative/source"
    assert brief.related == ("ok-slug",)
    assert all(f.severity == "warning" for f in findings)


def test_front_matter_overrides_body() -> None:
    brief = parse_brief((DATA / "briefs" / "unknown_sections.md").read_bytes(), "x.md")
    assert brief.slug == "custom-slug"
    assert str(brief.date) == "2026-05-06"  # front matter wins over Meta's 2026-05-01
    assert brief.status == "draft"
    assert brief.updated is not None and brief.updated.isoformat() == "2026-05-07T08:00:00+00:00"
    assert brief.sections[0].title == "Timeline"
    assert '<a href="https://timeline.example/1">event</a>' in brief.sections[0].body.html
    assert "<b>" not in brief.sections[0].body.html
    assert [lens.name for lens in brief.lenses] == ["unlabelled", "Second lens"]
    multi = brief.lenses[1].takes[2]
    assert multi.text.text == "First line continues on an indented line."
    assert multi.quote == "Quote part one part two"
    assert multi.source == "https://d.example/4"
    assert brief.lenses[1].takes[0].region == "" and brief.lenses[1].takes[1].region == "Somewhere"


def test_minimal_brief_slug_from_file_name() -> None:
    brief = parse_brief((DATA / "briefs" / "minimal.md").read_bytes(), "some/dir/My Brief_01.md")
    assert brief.slug == "my-brief-01"
    assert brief.lenses == () and brief.what_to_watch == () and not brief.why_it_matters


def test_non_latin_scripts_round_trip() -> None:
    brief = parse_brief((DATA / "briefs" / "non_latin.md").read_bytes(), "non_latin.md")
    assert brief.title.startswith("عنوان")
    assert brief.lenses[0].takes[0].outlet == "الجزيرة"
    assert brief.lenses[0].takes[0].quote == "اقتباس باللغة العربية"
    assert brief.lenses[1].takes[0].quote == "引用"
    assert brief.regions == ("قطر", "ישראל", "中国")


@pytest.mark.parametrize(
    ("data", "line", "message"),
    [
        (b"", 1, "empty file"),
        (b"  \n\n", 1, "empty file"),
        (b"# T\n**Meta:** date: 2026-01-01\n## Summary\nok \xff\xfe bad\n", 4, "not UTF-8"),
        (b"---\ntitle: x\n", 1, "never closed"),
        (b"---\ntitle: [unclosed\n---\n# T\n", 3, "bad front matter YAML"),
        (b"---\n- a list\n---\n# T\n", 2, "expected key: value"),
        (b"**Meta:** date: 2026-01-01\n## Summary\ntext\n", 1, "no title"),
        (b"# Title\n## Summary\ntext\n", 1, "no date"),
        (b"# Title\n**Meta:** date: 2026-01-01\n## Why it matters\ntext\n", 1, "no summary"),
        (b"# Title\n**Meta:** date: 2026-13-01\n## Summary\ntext\n", 2, "Meta date is not YYYY-MM-DD"),
        (b"---\ndate: 2026-01-01T10:00:00\n---\n# T\n## Summary\nx\n", 2, "needs a time zone"),
        (b"---\nslug: ../../etc/passwd\ndate: 2026-01-01\n---\n# T\n## Summary\nx\n", 2, "slug"),
        (b"---\nstatus: live\ndate: 2026-01-01\n---\n# T\n## Summary\nx\n", 2, "draft or published"),
        (b"---\ntitle: {a: 1}\ndate: 2026-01-01\n---\n## Summary\nx\n", 2, "expected text"),
    ],
)
def test_errors_name_file_and_line(data: bytes, line: int, message: str) -> None:
    with pytest.raises(BriefError) as info:
        parse_brief(data, "bad.md")
    err = info.value
    assert err.path == "bad.md"
    assert err.line == line, str(err)
    assert message in err.message
    assert str(err).startswith(f"bad.md:{line}: ")


def test_no_slug_derivable() -> None:
    data = b"# T\n**Meta:** date: 2026-01-01\n## Summary\nx\n"
    with pytest.raises(BriefError, match="no slug"):
        parse_brief(data, "___.md")


def test_meta_count_mismatch_is_a_warning() -> None:
    data = b"# T\n**Meta:** date: 2026-01-01 \xc2\xb7 3 takes\n## Summary\nx\n## Regional takes\n### L\n- **A** (X, en) \xe2\x80\x94 t\n  Source: https://a.example/\n"
    brief, findings = lint(data, "c.md")
    assert brief is not None
    assert [str(f) for f in findings] == ["c.md:2: warning: Meta says 3 takes but 1 were parsed"]


def test_take_without_source_warns() -> None:
    data = "# T\n**Meta:** date: 2026-01-01\n## Summary\nx\n## Regional takes\n### L\n- **A** (X, en) — t\n".encode()
    _, findings = lint(data, "s.md")
    assert [str(f) for f in findings] == ["s.md:7: warning: take by 'A' has no source URL"]


def test_control_characters_removed_with_warning() -> None:
    data = b"# Ti\x01tle\x0b\n**Meta:** date: 2026-01-01\n## Summary\nbell\x07 here\n"
    brief, findings = lint(data, "c.md")
    assert brief is not None and brief.title == "Title" and brief.summary.text == "bell here"
    assert findings[0].line == 1 and "control characters" in findings[0].message


def test_relative_links_without_any_base_are_dropped() -> None:
    data = b"# T\n**Meta:** date: 2026-01-01\n## Summary\nsee [x](/a/b)\n"
    brief, findings = lint(data, "r.md")
    assert brief is not None and "href" not in brief.summary.html
    assert "dropped relative link" in findings[0].message
    brief2, _ = lint(data, "r.md", base_url="https://site.example/sub/")
    assert brief2 is not None and 'href="https://site.example/a/b"' in brief2.summary.html


def test_slugify() -> None:
    assert slugify("Ünïcode Tag / With Stuff!") == "unicode-tag-with-stuff"
    assert slugify("../..") == ""
    assert slugify("中文") == ""


def test_sample_briefs_are_clean() -> None:
    from publisher.briefs.lint import check_paths

    report = check_paths([SAMPLES], base_url="http://127.0.0.1:8000/")
    assert report.files >= 5
    assert report.findings == ()


def test_tag_slug_keeps_non_latin_tags() -> None:
    from publisher.briefs import tag_slug

    assert tag_slug("Alibaba Qwen") == "alibaba-qwen"
    tokyo = tag_slug("東京")
    assert tokyo.startswith("u-") and len(tokyo) == 14 and tokyo == tag_slug(" 東京 ")
    assert tag_slug("الجزيرة") != tokyo
    assert tag_slug("·—·") == ""
    data = "---\ntags: [東京, 'ok']\n---\n# T\n**Meta:** date: 2026-01-01\n## Summary\nx\n".encode()
    brief, findings = lint(data, "t.md")
    assert brief is not None and brief.tags == ("東京", "ok") and findings == []


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120) | st.sampled_from(["a" * 80, "a" * 81, "東" * 80, "東" * 81, " x " * 27]))
def test_tag_slug_is_the_same_remembered_or_not(name: str) -> None:
    """Short names go through a memo (briefs repeat entities); the key is the one computed afresh, twice over."""
    from publisher.briefs import slugs

    assert slugs.tag_slug(name) == slugs._tag_slug(name) == slugs.tag_slug(name)
