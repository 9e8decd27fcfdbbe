"""Story issues, digests and their MIME messages (publisher.newsletter)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import re
import unicodedata
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import lxml.html  # type: ignore[import-untyped]
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.core import config as config_mod
from publisher.briefs import parse_brief
from publisher.cli import main
from publisher.core.config import Config
from publisher.core.errors import DeliveryError, RenderError
from publisher.briefs.model import Brief
from publisher.render.mjml import MAX_LINE_OCTETS, _fold_html
from publisher.mail.message import MessageTemplate
from publisher.render.email import RenderedIssue, render_digest, render_story, unsubscribe_placeholder, web_version
from tests.support.files import DATA, GOLDEN, assert_golden
from tests.support.project import build_config

BASE = "https://briefs.example.org/"
SENT_AT = dt.datetime(2026, 6, 25, 7, 0, tzinfo=dt.timezone.utc)
UNSUB = "https://briefs.example.org/unsubscribe?t=abc.DEF_123&x=1"
FIXTURES = ["reference.txt", "hostile.md", "non_latin.md", "minimal.md", "unknown_sections.md", "crlf_bom.md"]


def make_config(tmp: Path | None = None, **sections: dict[str, Any]) -> Config:
    data: dict[str, Any] = {
        "site": {"title": "World Briefs", "base_url": BASE, "logo": "https://briefs.example.org/logo.png"},
        "email": {
            "sender_name": "World Briefs Desk",
            "sender_address": "desk@briefs.example.org",
            "reply_to": "editors@briefs.example.org",
            "postal_address": "World Briefs, 1 Example Street, 00000 Example City",
            "list_id": "stories.briefs.example.org",
            "unsubscribe_mailto": "unsubscribe@briefs.example.org",
        },
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return build_config(tmp, **data)


def load(name: str) -> Brief:
    return parse_brief((DATA / "briefs" / name).read_bytes(), name, base_url=BASE)


def big_brief(n_takes: int = 240, *, lenses: int = 8, regions: int = 12, text_every: int = 1) -> Brief:
    """A brief with many takes; every ``text_every``-th take has text and a quote."""
    lines = [
        "# Global summit ends with a 240-outlet scramble for the last word",
        "> A deliberately huge coverage table",
        "",
        f"**Meta:** type: event · date: 2026-07-01 · {n_takes} takes · {lenses} lenses · {regions} regions",
        "",
        "## Summary",
        "",
        "Leaders met for three days. " * 12,
        "",
        "## Why it matters",
        "",
        "It tests the email size budget.",
        "",
        "## Regional takes",
    ]
    per_lens = -(-n_takes // lenses)
    n = 0
    for lens in range(lenses):
        lines += ["", f"### Lens number {lens + 1}"]
        for _ in range(per_lens):
            if n == n_takes:
                break
            region = f"Region {n % regions + 1}"
            if n % text_every == 0:
                lines.append(
                    f"- **Outlet {n}** ({region}, en) — Outlet {n} reads the summit as a turning point "
                    "for trade, security and the climate agenda, with long caveats about follow-through."
                )
                lines.append(f'  > "Quote number {n}: the summit changed little and promised a great deal."')
            else:
                lines.append(f"- **Outlet {n}** ({region}, en) — ")
            lines.append(f"  Source: https://outlet{n}.example/world/2026/07/01/summit-coverage-{n}")
            n += 1
    lines += ["", "Canonical: https://briefs.example.org/n/global-summit-scramble", ""]
    return parse_brief("\n".join(lines).encode(), "big.md", base_url=BASE)


@pytest.fixture(scope="module")
def cfg() -> Config:
    return make_config()


def all_fixtures() -> Iterator[tuple[str, Brief]]:
    for name in FIXTURES:
        yield name, load(name)
    yield "big-240", big_brief()
    yield "big-400-folded", big_brief(400, text_every=3)
    yield "cjk-long", cjk_brief()


FIXTURE_IDS = [*FIXTURES, "big-240", "big-400-folded", "cjk-long"]


def cjk_brief() -> Brief:
    para = "日本政府は備蓄米をさらに30万トン放出すると発表した。価格は過去最高を記録しており、消費者の不満が高まっている。" * 6
    source = f"""# 日本、備蓄米30万トンを追加放出 価格は過去最高に
> 政府は{para[:60]}

**Meta:** date: 2026-07-02 · 1 take · 1 lens · 1 region

## Summary

{para}

## Regional takes

### 国内紙
- **朝日新聞** (日本, ja) — {para[:120]}
  Source: https://www.asahi.com/articles/rice.html

Canonical: https://briefs.example.org/n/japan-rice
"""
    return parse_brief(source.encode(), "cjk.md", base_url=BASE)


def columns(line: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line)


@pytest.fixture(scope="module", params=FIXTURE_IDS)
def story(request: pytest.FixtureRequest, cfg: Config) -> tuple[Brief, RenderedIssue]:
    brief = dict(all_fixtures())[request.param]
    return brief, render_story(brief, cfg)


def digest_briefs() -> list[Brief]:
    return [load("reference.txt"), load("non_latin.md"), load("minimal.md"), load("hostile.md")]


# ------------------------------------------------------------------ goldens


def test_golden_story(cfg: Config) -> None:
    issue = render_story(load("reference.txt"), cfg)
    assert_golden(GOLDEN / "newsletter" / "story.mjml", issue.mjml)
    assert_golden(GOLDEN / "newsletter" / "story.txt", issue.text)
    message = MessageTemplate.build(issue, cfg, sent_at=SENT_AT).personalize(
        to="reader@example.net", unsubscribe_url=UNSUB, message_id="<s1.r1@briefs.example.org>"
    )
    assert_golden(GOLDEN / "newsletter" / "story.eml", message)


def test_golden_digest(cfg: Config) -> None:
    issue = render_digest(digest_briefs(), cfg, period_key="2026-06-25", period_label="25 June 2026")
    assert_golden(GOLDEN / "newsletter" / "digest.mjml", issue.mjml)
    assert_golden(GOLDEN / "newsletter" / "digest.txt", issue.text)


def test_render_is_deterministic(cfg: Config) -> None:
    a, b = render_story(load("reference.txt"), cfg), render_story(load("reference.txt"), cfg)
    assert a == b
    ma = MessageTemplate.build(a, cfg, sent_at=SENT_AT).personalize(to="a@example.net", unsubscribe_url=UNSUB, message_id="<1@x.example>")
    mb = MessageTemplate.build(b, cfg, sent_at=SENT_AT).personalize(to="a@example.net", unsubscribe_url=UNSUB, message_id="<1@x.example>")
    assert ma == mb


# ------------------------------------------------------------------ story content


def test_story_content(cfg: Config) -> None:
    brief = load("reference.txt")
    issue = render_story(brief, cfg)
    assert issue.kind == "story" and issue.key == brief.slug
    assert issue.subject == brief.title
    assert issue.preheader.startswith("28.8 million fraudulent exchanges")
    doc = lxml.html.fromstring(issue.html)
    text = doc.text_content()
    # The "unlabelled" lens is not a lens readers see; no raw language codes.
    assert "17 takes · 5 lenses · 8 regions" in text
    assert "nlabelled" not in text.lower() and "UNLABELLED" not in issue.text
    regions = doc.xpath("//p[@class='regions']")[0].text_content()
    assert regions == "United States\u00a07 · India\u00a02 · Pakistan\u00a02 · Japan\u00a02 · Netherlands / global\u00a01 · Taiwan\u00a01 · Hong Kong / China\u00a01 · China\u00a01"
    for heading in ("Summary", "Why it matters", "What to watch", "How the world covered it"):
        assert heading in [h.text_content() for h in doc.iter("h2")]
    # The preheader is the first (hidden) text of the body.
    assert " ".join(doc.body.text_content().split()).startswith(issue.preheader)
    assert not [t for t in doc.iter("table") if t.xpath("thead")]  # no data table in the email
    takes = doc.xpath("//div[@class='take']")
    assert len(takes) == 5  # the five takes with text, one per lens
    cnbc = takes[0].xpath(".//a[.='CNBC']")[0]
    assert cnbc.get("href") == "https://www.cnbc.com/2026/06/24/anthropic-alibaba-distillation-campaign.html"
    assert takes[0].xpath("p[2]/@lang") == ["en"] and takes[0].xpath("p[2]/@dir") == ["ltr"]
    assert takes[0].xpath("p[2]")[0].text_content() == (
        "Lead account of Anthropic's June 10 letter to Senators Tim Scott and Elizabeth Warren, disclosed June 24."
    )
    also = doc.xpath("//p[starts-with(normalize-space(.), 'Also covered:')]")
    assert len(also) == 1 and len(also[0].xpath("a")) == 8 and also[0].text_content().endswith("and 4 more")
    see_all = doc.xpath("//a[.='See all 17 takes →']/@href")
    assert see_all == [BASE + f"issues/{brief.slug}.html"]
    assert doc.xpath("//a[.='Read the full story →']/@href") == [brief.canonical]
    # Related stories without a known title are left out, never shown as slugs.
    assert "Related:" not in text and "anthropic-series-h-ipo-2026" not in issue.html
    assert "Anthropic · Alibaba Qwen · Openai" in text
    # Footer: sender, address, why, view in browser, unsubscribe.
    links = {a.text_content(): a.get("href") for a in doc.iter("a")}
    assert links["View in your browser"] == BASE + f"issues/{brief.slug}.html"
    assert links["Unsubscribe"] == unsubscribe_placeholder(issue.content_hash)
    assert cfg.email.postal_address in text and "you subscribed" in text
    assert links["Manage subscription"] == BASE + "manage/"
    assert "World Briefs Desk · World Briefs, 1 Example Street" in text  # not "Desk · Desk"
    hidden = doc.xpath("//div[starts-with(@style, 'display:none')]")[0]
    assert "color" not in hidden.get("style")  # hidden without white-on-white text


def test_related_titles_when_known(cfg: Config) -> None:
    brief = load("reference.txt")
    issue = render_story(brief, cfg, related_titles={"chip-controls": "Chip controls tighten"})
    doc = lxml.html.fromstring(issue.html)
    assert doc.xpath("//a[.='Chip controls tighten']/@href") == [BASE + "issues/chip-controls.html"]
    assert "anthropic-series-h-ipo-2026" not in issue.html
    assert issue.content_hash != render_story(brief, cfg).content_hash


def test_no_takes_no_zero_counts(cfg: Config) -> None:
    issue = render_story(load("minimal.md"), cfg)
    assert "0 takes" not in issue.html and "0 regions" not in issue.text
    assert "How the world covered it" not in issue.html


def test_first_k_takes_from_k_lenses(tmp_path: Path) -> None:
    brief = big_brief(240, lenses=30, regions=12)
    cfg = make_config(tmp_path, email={"coverage_takes": 8})
    doc = lxml.html.fromstring(render_story(brief, cfg).html)
    takes = doc.xpath("//div[@class='take']")
    assert len(takes) == 8
    lenses = [t.xpath(".//span[@class='muted']")[0].text_content() for t in takes]
    assert len(set(lenses)) == 8
    regions = re.sub(r"[ \n]+", " ", doc.xpath("//p[@class='regions']")[0].text_content())
    assert all(f"Region {n}\u00a0" in regions for n in range(1, 13))
    assert doc.xpath("//a[.='See all 240 takes →']")
    assert len(doc.xpath("//span[@class='chip']")) == 10 and "+20 more lenses" in doc.text_content()


def test_rtl_site_and_takes(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, site={"language": "ar"})
    doc = lxml.html.fromstring(render_story(load("non_latin.md"), cfg).html)
    assert doc.get("dir") == "rtl" and doc.get("lang") == "ar"
    arabic = doc.xpath("//p[@lang='ar']")[0]
    assert arabic.get("dir") == "rtl" and "تغطية" in arabic.text_content()
    assert doc.xpath("//p[@lang='he']/@dir") == ["rtl"] and doc.xpath("//p[@lang='zh']/@dir") == ["ltr"]
    assert not doc.xpath("//em")  # no synthetic italics anywhere in the takes


def test_story_text_version(cfg: Config) -> None:
    issue = render_story(load("reference.txt"), cfg)
    text = issue.text
    assert "SUMMARY" in text and "HOW THE WORLD COVERED IT" in text
    assert "* CNBC [3] · United States · US tech financial" in text
    assert "Read the full story: [" in text and "Manage subscription: " + BASE + "manage/" in text
    assert "[3] https://www.cnbc.com/2026/06/24/anthropic-alibaba-distillation-campaign.html" in text
    assert f"Unsubscribe: {unsubscribe_placeholder(issue.content_hash)}" in text


def test_text_readable_width(story: tuple[Brief, RenderedIssue]) -> None:
    _, issue = story
    for line in issue.text.splitlines():
        # Only a line that is (or ends in) one unbreakable URL may run long.
        if columns(line) > 78:
            assert re.search(r"https?://\S+$", line), line


def test_big_story_shows_k_takes_and_links_the_rest(cfg: Config) -> None:
    brief = big_brief()
    issue = render_story(brief, cfg)
    doc = lxml.html.fromstring(issue.html)
    assert len(doc.xpath("//div[@class='take']")) == cfg.email.coverage_takes == 8
    more = doc.xpath("//a[.='See all 240 takes →']")
    assert len(more) == 1 and more[0].get("href") == BASE + f"issues/{brief.slug}.html"
    assert "See all 240 takes: [" in issue.text
    assert len(issue.html.encode()) < 30_000


def test_size_budget_cuts_curated_takes(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, email={"coverage_takes": 40, "max_html_bytes": 22_000})
    issue = render_story(big_brief(), cfg)
    size = len(issue.html.encode())
    shown = len(lxml.html.fromstring(issue.html).xpath("//div[@class='take']"))
    assert size <= 22_000 and 0 < shown < 40


def test_budget_too_small_is_an_error(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, email={"max_html_bytes": 2_000})
    with pytest.raises(RenderError, match="without any takes"):
        render_story(load("reference.txt"), cfg)


# ------------------------------------------------------------------ rules over every fixture


def test_rule_size(story: tuple[Brief, RenderedIssue]) -> None:
    assert len(story[1].html.encode()) < 90_000


def test_rule_dark_mode(story: tuple[Brief, RenderedIssue]) -> None:
    doc = lxml.html.fromstring(story[1].html)
    assert doc.xpath("//head/meta[@name='color-scheme']/@content") == ["light dark"]
    css = "".join(s.text_content() for s in doc.iter("style"))
    assert "@media (prefers-color-scheme: dark)" in css
    assert re.search(r"\.dm-text div[^{]*\{ color: #e6e8eb !important", css)


def test_rule_accessibility(story: tuple[Brief, RenderedIssue]) -> None:
    doc = lxml.html.fromstring(story[1].html)
    assert doc.get("lang") == "en"
    data_tables = 0
    for table in doc.iter("table"):
        if table.xpath("thead/tr/th"):
            data_tables += 1
            assert table.get("role") is None
            assert all(th.get("scope") for th in table.iter("th"))
        else:
            assert table.get("role") == "presentation", lxml.html.tostring(table)[:200]
    assert data_tables == 0  # the full table is on the web page; the email's takes are one column
    for img in doc.iter("img"):
        assert img.get("alt"), lxml.html.tostring(img)


def test_rule_no_mjml_no_script_only_http_links(story: tuple[Brief, RenderedIssue], cfg: Config) -> None:
    _, issue = story
    html, _text = web_version(issue, cfg)
    assert "<mj-" not in html.lower()
    doc = lxml.html.fromstring(html)
    assert not list(doc.iter("script", "iframe", "object", "embed", "form"))
    for el in doc.iter():
        for name, value in el.attrib.items():
            assert not name.lower().startswith("on"), (el.tag, name)
            if name in ("href", "src", "background", "action"):
                assert re.match(r"^https?://[^\s/]+", value), (el.tag, name, value)
    # Only the layout <link>s mjml emits would count; web fonts are disabled.
    assert not doc.xpath("//link")


def test_rule_lines_fit_8bit_transport(story: tuple[Brief, RenderedIssue]) -> None:
    _, issue = story
    for body in (issue.html, issue.text):
        assert max(len(line.encode()) for line in body.split("\n")) <= MAX_LINE_OCTETS


def test_folding_never_changes_what_renders(story: tuple[Brief, RenderedIssue]) -> None:
    """Folding only adds newlines where they render as nothing: after a
    block-level tag, beside a space, or inside an empty comment."""
    import mjml

    _, issue = story
    raw = mjml.mjml2html(issue.mjml, disable_comments=True, fonts={})
    assert issue.html.replace("<!--\n-->", "").replace("\n", "") == raw.replace("\n", "")
    inline = ("</a>", "</strong>", "</em>", "</span>", "</code>", "</b>", "</i>")
    folded = issue.html.replace("<!--\n-->", "\x00")
    i = 0
    for j, ch in enumerate(folded):
        if ch == "\x00":
            continue
        if i < len(raw) and raw[i] == ch:
            i += 1
            continue
        before = folded[max(0, j - 20) : j]
        assert ch == "\n" and before.endswith((">", " ")) and not before.endswith(inline), before
    assert i == len(raw.rstrip("\n")) or i == len(raw)


def test_cjk_paragraph_without_spaces_is_folded_without_visible_change(cfg: Config) -> None:
    issue = render_story(cjk_brief(), cfg)
    assert "<!--\n-->" in issue.html  # the only way to break 300+ CJK characters invisibly
    summary = [p for p in lxml.html.fromstring(issue.html).iter("p") if "備蓄米" in p.text_content()][0]
    assert "\n" not in summary.text_content()


def test_hostile_brief_is_escaped(cfg: Config) -> None:
    brief = load("hostile.md")
    issue = render_story(brief, cfg)
    doc = lxml.html.fromstring(issue.html)
    assert doc.xpath("//h1")[0].text_content() == "<script>alert('t')</script> & \"quotes\" ]]>"
    assert doc.find(".//title").text == brief.title
    hrefs = " ".join(doc.xpath("//@href"))
    assert "javascript" not in hrefs.lower() and "data:" not in hrefs and "vbscript" not in hrefs
    # The outlet with a javascript: source is shown, but not linked.
    cell = doc.xpath("//div[@class='take']/p[contains(., 'Outlet')]")[0]
    assert cell.text_content().startswith("<b>Outlet</b> & Sons · Region <x>") and not cell.xpath(".//a")
    assert "javascript" not in issue.text.lower()


def test_subject_cannot_inject_headers(cfg: Config) -> None:
    brief = dataclasses.replace(
        load("reference.txt"), title="Hi\r\nBcc: victim@example.net\u2028\x85Second\x00line\u202e"
    )
    issue = render_story(brief, cfg)
    assert issue.subject == "Hi Bcc: victim@example.net Second line"
    raw = MessageTemplate.build(issue, cfg, sent_at=SENT_AT).personalize(
        to="a@example.net", unsubscribe_url=UNSUB, message_id="<1@x.example>"
    )
    msg = parse(raw)
    assert msg["Bcc"] is None
    assert msg["Subject"] == issue.subject


# ------------------------------------------------------------------ digest


def test_digest_content(cfg: Config) -> None:
    briefs = digest_briefs()
    draft = dataclasses.replace(load("minimal.md"), slug="draft-one", title="Unpublished draft", status="draft")
    issue = render_digest([*briefs, draft], cfg, period_key="2026-06-25", period_label="25 June 2026")
    assert issue.kind == "digest" and issue.key == "2026-06-25"
    assert issue.subject == "Anthropic accuses Alibaba of largest-ever AI distillation at… + 3 more"
    assert len(issue.subject) <= 70
    assert issue.preheader.startswith(briefs[1].title)
    doc = lxml.html.fromstring(issue.html)
    contents = doc.xpath("//ol/li/a")
    assert [a.text_content() for a in contents] == [b.title for b in briefs]
    assert contents[0].get("href") == briefs[0].canonical
    assert contents[2].get("href") == BASE + "issues/minimal.html"  # no canonical: our web copy
    assert "Unpublished draft" not in issue.html and "Unpublished draft" not in issue.text
    assert "17 takes · 5 lenses · 8 regions — United States\u00a07 · India\u00a02 · Pakistan\u00a02" in doc.text_content()
    assert doc.xpath("//h1")[0].text_content() == "25 June 2026"
    first = doc.xpath("//div[@class='take']")[:2]
    assert [t.xpath(".//span[@class='muted']")[0].text_content() for t in first] == ["· US tech financial", "· hardware / security detail"]
    assert doc.xpath("//a[.='View in your browser']/@href") == [BASE + "issues/digest-2026-06-25.html"]
    assert "IN THIS ISSUE" in issue.text


def test_digest_cut_to_budget(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, email={"max_html_bytes": 40_000})
    ref = load("reference.txt")
    many = [dataclasses.replace(ref, slug=f"story-{i}", title=f"Story {i}", canonical=None) for i in range(40)]
    issue = render_digest(many, cfg, period_key="2026-W26", period_label="week 26")
    assert len(issue.html.encode()) <= 40_000
    doc = lxml.html.fromstring(issue.html)
    assert len(doc.xpath("//ol/li")) == 40  # every story stays in the contents
    assert "more online" in doc.text_content()


def test_empty_digest_is_an_error(cfg: Config) -> None:
    with pytest.raises(RenderError, match="no published stories"):
        render_digest([], cfg, period_key="x", period_label="x")


# ------------------------------------------------------------------ templates


def test_user_template_overrides_package_template(tmp_path: Path) -> None:
    override = tmp_path / "templates" / "email" / "_footer.txt.j2"
    override.parent.mkdir(parents=True)
    override.write_text("Custom footer for {{ sender_name }}\nUnsubscribe: {{ unsubscribe_url }}\n")
    cfg = make_config(tmp_path, paths={"templates": str(tmp_path / "templates")})
    issue = render_story(load("reference.txt"), cfg)
    assert "Custom footer for World Briefs Desk" in issue.text
    # Templates shape the output, so they are part of the content hash.
    assert issue.content_hash != render_story(load("reference.txt"), make_config(tmp_path)).content_hash


def test_unknown_mjml_tag_is_caught(tmp_path: Path) -> None:
    override = tmp_path / "t" / "email" / "_masthead.mjml.j2"
    override.parent.mkdir(parents=True)
    override.write_text("<mj-section><mj-column><mj-txet>typo</mj-txet></mj-column></mj-section>\n")
    cfg = make_config(tmp_path, paths={"templates": str(tmp_path / "t")})
    with pytest.raises(RenderError, match="mj-txet"):
        render_story(load("reference.txt"), cfg)


# ------------------------------------------------------------------ MIME


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_personalized_message_parses_back(cfg: Config) -> None:
    issue = render_story(load("non_latin.md"), cfg)
    template = MessageTemplate.build(issue, cfg, sent_at=SENT_AT)
    raw = template.personalize(to="reader@example.net", unsubscribe_url=UNSUB, message_id="<m1.42@briefs.example.org>")
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= MAX_LINE_OCTETS
    msg = parse(raw)
    assert not msg.defects
    assert msg["To"] == "reader@example.net"
    assert msg["From"] == "World Briefs Desk <desk@briefs.example.org>"
    assert msg["Reply-To"] == "editors@briefs.example.org"
    assert msg["Subject"] == issue.subject  # non-ASCII, RFC 2047 encoded on the wire
    assert msg["Message-ID"] == "<m1.42@briefs.example.org>"
    assert msg["Date"].datetime == SENT_AT
    assert msg["List-Id"] == "World Briefs <stories.briefs.example.org>"
    assert msg["List-Unsubscribe"] == f"<{UNSUB}>, <mailto:unsubscribe@briefs.example.org?subject=unsubscribe>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg.get_content_type() == "multipart/alternative"
    text_part, html_part = msg.iter_parts()
    assert text_part.get_content_type() == "text/plain" and html_part.get_content_type() == "text/html"
    text, html = text_part.get_content(), html_part.get_content()
    web_html, web_text = web_version(issue, cfg)
    placeholder = unsubscribe_placeholder(issue.content_hash)
    assert placeholder not in text and placeholder not in html
    assert text.replace("\r\n", "\n") == issue.text.replace(placeholder, UNSUB)
    assert html.replace("\r\n", "\n") == issue.html.replace(placeholder, UNSUB.replace("&", "&amp;"))
    doc = lxml.html.fromstring(html)
    assert doc.xpath("//a[.='Unsubscribe']/@href") == [UNSUB]


def test_recipients_differ_only_in_their_parts(cfg: Config) -> None:
    issue = render_story(load("reference.txt"), cfg)
    template = MessageTemplate.build(issue, cfg, sent_at=SENT_AT)
    a = parse(template.personalize(to="a@example.net", unsubscribe_url=BASE + "unsubscribe?t=AAA", message_id="<1@x.example>"))
    b = parse(template.personalize(to="b@example.net", unsubscribe_url=BASE + "unsubscribe?t=BBB", message_id="<2@x.example>"))
    assert (a["To"], b["To"]) == ("a@example.net", "b@example.net")
    assert "t=AAA" in a.as_string() and "t=BBB" not in a.as_string()
    assert a.get_body(("plain",)).get_content().replace("AAA", "BBB") == b.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_test_send_marks_subject(cfg: Config) -> None:
    issue = render_story(load("reference.txt"), cfg)
    msg = parse(MessageTemplate.build(issue, cfg, sent_at=SENT_AT).personalize(
        to="editor@example.net", unsubscribe_url=UNSUB, message_id="<t@x.example>", test=True
    ))
    assert msg["Subject"] == "[TEST] " + issue.subject


def test_no_mailto_when_not_configured(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, email={"unsubscribe_mailto": "", "reply_to": ""})
    issue = render_story(load("minimal.md"), cfg)
    msg = parse(MessageTemplate.build(issue, cfg, sent_at=SENT_AT).personalize(
        to="a@example.net", unsubscribe_url=UNSUB, message_id="<1@x.example>"
    ))
    assert msg["List-Unsubscribe"] == f"<{UNSUB}>"
    assert msg["Reply-To"] is None


@pytest.mark.parametrize(
    "field,value",
    [
        ("to", "a@example.net\r\nBcc: victim@example.net"),
        ("to", "a@example.net>"),
        ("to", "not-an-address"),
        ("message_id", "<1@x.example>\r\nX-Evil: 1"),
        ("message_id", "no-brackets@x.example"),
        ("unsubscribe_url", "javascript:alert(1)"),
        ("unsubscribe_url", "https://x.example/u?t=1\r\nX-Evil: 1"),
        ("unsubscribe_url", 'https://x.example/"><script>'),
    ],
)
def test_personalize_refuses_injection(cfg: Config, field: str, value: str) -> None:
    template = MessageTemplate.build(render_story(load("minimal.md"), cfg), cfg, sent_at=SENT_AT)
    args: dict[str, Any] = {"to": "a@example.net", "unsubscribe_url": UNSUB, "message_id": "<1@x.example>", field: value}
    with pytest.raises(DeliveryError) as info:
        template.personalize(**args)
    assert info.value.permanent


def test_placeholder_text_in_a_brief_is_not_replaced(cfg: Config) -> None:
    brief = load("reference.txt")
    token = unsubscribe_placeholder(render_story(brief, cfg).content_hash)
    # A brief that quotes the placeholder an earlier render used: its own
    # placeholder differs (the hash covers the brief), so the quote survives.
    sneaky = parse_brief(
        (DATA / "briefs" / "reference.txt").read_bytes().replace(b"## Why it matters", f"Try {token} now.\n\n## Why it matters".encode()),
        "reference.txt",
        base_url=BASE,
    )
    issue = render_story(sneaky, cfg)
    assert token in issue.text and unsubscribe_placeholder(issue.content_hash) != token
    msg = parse(MessageTemplate.build(issue, cfg, sent_at=SENT_AT).personalize(
        to="a@example.net", unsubscribe_url=UNSUB, message_id="<1@x.example>"
    ))
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f"Try {token} now." in " ".join(text.split())
    assert text.count(UNSUB) == 1


def test_build_needs_aware_time(cfg: Config) -> None:
    with pytest.raises(RenderError):
        MessageTemplate.build(render_story(load("minimal.md"), cfg), cfg, sent_at=dt.datetime(2026, 1, 1))


def test_web_version_fills_public_unsubscribe(cfg: Config) -> None:
    issue = render_story(load("reference.txt"), cfg)
    html, text = web_version(issue, cfg)
    token = unsubscribe_placeholder(issue.content_hash)
    assert token not in html and token not in text
    assert lxml.html.fromstring(html).xpath("//a[.='Unsubscribe']/@href") == [BASE + "unsubscribe"]


# ------------------------------------------------------------------ CLI


def test_cli_render(tmp_path: Path) -> None:
    conf = tmp_path / "config.toml"
    conf.write_text(f'[site]\nbase_url = "{BASE}"\n[paths]\ntemplates = "none"\n')
    runner = CliRunner()
    ref = str(DATA / "briefs" / "reference.txt")
    eml = runner.invoke(main, ["render", ref, "--as", "eml", "--config", str(conf)])
    assert eml.exit_code == 0, eml.output
    msg = parse(eml.stdout_bytes)
    assert msg["To"] == "reader@example.org" and msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    for fmt, marker in (("html", "<!doctype html>"), ("text", "HOW THE WORLD COVERED IT"), ("mjml", "<mjml")):
        out = runner.invoke(main, ["render", ref, "--as", fmt, "--config", str(conf)])
        assert out.exit_code == 0 and marker in out.output, out.output[:300]
    bad = runner.invoke(main, ["render", str(tmp_path / "missing.md"), "--config", str(conf)])
    assert bad.exit_code == 1 and "error:" in bad.output


# ------------------------------------------------------------------ folding, adversarially

_PIECES = st.sampled_from(
    ["<td>", "</td>", "<p>", "</p>", "<a href=\"https://x.example/a?b=1&amp;c=2\">", "</a>", " ", "&amp;", "&#847;",
     "日本語の文章", "word", "x" * 50, "<title>", "</title>", "-->", "<!--", "é", "😀", "<br>"]
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_PIECES, min_size=0, max_size=900))
def test_fold_terminates_and_only_adds_invisible_breaks(pieces: list[str]) -> None:
    html = "".join(pieces)
    folded = _fold_html(html)
    assert folded.replace("<!--\n-->", "").replace("\n", "") == html.replace("\n", "")
    for line in folded.split("\n"):
        # Lines stay short unless the input had nowhere safe to cut.
        if len(line.encode()) > 900:
            assert " " not in line and "</td>" not in line


def test_fold_cjk_without_any_tag() -> None:
    html = "<p>" + "東京" * 2000 + "</p>"
    folded = _fold_html(html)
    assert max(len(line.encode()) for line in folded.split("\n")) <= 904
    assert folded.replace("<!--\n-->", "") == html
