"""Generated briefs for property tests of the renderers: every section, hostile text."""

from __future__ import annotations

from hypothesis import strategies as st

# Text that mjml, Jinja's escaping or the line folding could treat differently
# from the token standing for it: markup characters, entities, quotes, RTL and
# CJK, unusual whitespace, Markdown punctuation, very long words and URLs.
PIECES = [
    "a", "plain words here", "<", ">", "&", "&amp;", "&nbsp;", "&#39;", '"', "'", "<mj-text>", "</p>", "<br>",
    "עברית", "العربية", "中文字符测试", "日本語", "한국어", "\u00a0", "\u2028", "\u3000", "\u200b", "\u202e", "é",
    "*em*", "**strong**", "_u_", "`code`", "[link](https://example.org/a?b=1&c=2)", "[rel](/x)", "[bad](javascript:x)",
    "e\u0301", "\u0915\u093f", "\U0001f44d\U0001f3fd", "\ufeff", "\ufe0f", "x" * 120, "https://example.org/" + "p" * 200,
    "中" * 400, "word " * 60, "  ", "\\", "!", "{{ x }}", "%", "-", "1.", "Stop. Next", "。",
]
text = st.lists(st.sampled_from(PIECES), min_size=1, max_size=6).map(" ".join)
line = text.map(lambda s: s.replace("\n", " ").strip() or "x")
multiline = st.lists(text, min_size=1, max_size=3).map(lambda parts: "\n".join(p.strip() or "y" for p in parts))


@st.composite
def take(draw: st.DrawFn) -> str:
    outlet = draw(line).replace("*", "")
    paren = draw(st.sampled_from(["", " (United States, en)", " (Israel, he)", " (中国, zh)", " (Egypt, ar)", " (, )", " (X)"]))
    body = draw(st.one_of(st.just(""), line))
    out = f"- **{outlet or 'Outlet'}**{paren} — {body}\n"
    if draw(st.booleans()):
        out += f"  > \"{draw(line)}\"\n"
    if draw(st.booleans()):
        out += "  Source: " + draw(st.sampled_from(["https://example.org/s?a=1&b=2", "https://x.example/" + "q" * 300, "ftp://x"])) + "\n"
    return out


@st.composite
def brief_text(draw: st.DrawFn) -> str:
    parts = [f"# {draw(line)}\n"]
    if draw(st.booleans()):
        parts.append(f"> {draw(line)}\n")
    parts.append("\n**Meta:** type: event · date: 2026-06-24\n")
    if draw(st.booleans()):
        parts.append(draw(st.sampled_from(["Canonical: https://example.org/story?a=1&b=2\n", "Canonical: https://example.org/" + "c" * 300 + "\n"])))
    parts.append("\n## Summary\n\n")
    parts.append("\n\n".join(draw(st.lists(multiline, min_size=1, max_size=3))) + "\n")
    if draw(st.booleans()):
        parts.append(f"\n## Why it matters\n\n{draw(multiline)}\n")
    watch = draw(st.lists(line, max_size=4))
    if watch:
        parts.append("\n## What to watch\n\n" + "".join(f"- {w}\n" for w in watch))
    lenses = draw(st.lists(st.tuples(st.sampled_from(["US tech", "unlabelled", "Gulf press", "中文媒体", "A & B"]), st.lists(take(), min_size=1, max_size=4)), max_size=4))
    if lenses:
        parts.append("\n## Regional takes\n\n")
        for name, takes in lenses:
            parts.append(f"### {name}\n" + "".join(takes) + "\n")
    if draw(st.booleans()):
        parts.append(f"\n## Notes from {draw(line)}\n\n{draw(multiline)}\n\n- item one\n- {draw(line)}\n\n```\n  code <x> &\n\n```\n")
    if draw(st.booleans()):
        related = draw(st.sampled_from(["[[other-story]]", "[[a]], [[b-c]]", ""]))
        ents = ", ".join(draw(st.lists(line.map(lambda s: s.replace(",", " ")), max_size=4)))
        parts.append(f"\n## Across the graph\n\nRelated: {related}\nEntities: {ents}\n")
    return "".join(parts)
