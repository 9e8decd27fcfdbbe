"""The compact coverage block and the public site in headless Chromium.

Screenshots at 600 px, 375 px and in dark mode land in tests/artifacts/
(email/ and site/) for a person to look at; axe-core (npm) checks WCAG A/AA
when it is installed (``.ci/run`` installs it into tests/.node/).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from publisher.briefs.model import Brief
from publisher.render import site
from publisher.render.email import render_digest, render_story, web_version
from tests.render.test_newsletter import big_brief, digest_briefs, load, make_config
from tests.support.browser import browser, needs_chromium  # noqa: F401  (browser is a fixture)
from tests.support.files import ROOT

ARTIFACTS = ROOT / "tests" / "artifacts"
AXE = Path(os.environ.get("AXE_JS", ROOT / "tests" / ".node" / "node_modules" / "axe-core" / "axe.min.js"))
K = 8

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    needs_chromium,
]


def many_lenses() -> Brief:
    return big_brief(240, lenses=30, regions=12)


def _emails() -> dict[str, tuple[str, Brief | None]]:
    cfg = make_config()
    rtl = make_config(site={"language": "ar"})
    made = {
        "reference": (render_story(load("reference.txt"), cfg), cfg, load("reference.txt")),
        "takes-240": (render_story(many_lenses(), cfg), cfg, many_lenses()),
        "no-takes": (render_story(load("minimal.md"), cfg), cfg, load("minimal.md")),
        "arabic-rtl": (render_story(load("non_latin.md"), rtl), rtl, load("non_latin.md")),
        "digest": (render_digest(digest_briefs(), cfg, period_key="2026-06-25", period_label="25 June 2026"), cfg, None),
    }
    return {name: (web_version(issue, c)[0], brief) for name, (issue, c, brief) in made.items()}


def _site_pages() -> dict[str, str]:
    cfg = make_config()
    briefs = [load("reference.txt"), load("non_latin.md"), load("minimal.md"), many_lenses()]
    items = [site.story_item(b, cfg) for b in briefs]
    tag = site.TagItem("anthropic", "Anthropic", 1)
    return {
        "home": site.home_page(items, cfg, [tag]),
        "story-reference": site.story_page(briefs[0], cfg, related_titles={"chip-controls": "Chip controls tighten"}),
        "story-240": site.story_page(briefs[3], cfg),
        "story-arabic": site.story_page(briefs[1], make_config(site={"language": "ar"})),
        "digest": site.digest_page(digest_briefs(), cfg, label="25 June 2026"),
        "archive": site.archive_page(items, cfg),
        "tags": site.tags_page([tag], cfg),
        "tag": site.tag_page(tag, items[:1], cfg),
        "manage": site.manage_page(cfg),
    }


EMAILS = _emails()
SITE = _site_pages()


def _open(browser: object, tmp_path: Path, name: str, html: str, width: int, dark: bool = False) -> object:
    page_file = tmp_path / f"{name}.html"
    page_file.write_text(html, encoding="utf-8")
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme="dark" if dark else "light")  # type: ignore[attr-defined]
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
    page.goto(page_file.as_uri())
    return page


def _no_overflow(page: object, name: str, width: int) -> None:
    scroll_width = page.evaluate("document.documentElement.scrollWidth")  # type: ignore[attr-defined]
    assert scroll_width <= width, f"{name} overflows at {width}px: {scroll_width}px wide"
    widest = page.evaluate("Math.max(...[...document.querySelectorAll('body *')].map(e => e.getBoundingClientRect().right))")  # type: ignore[attr-defined]
    assert widest <= width + 0.5, f"{name}: an element ends at {widest}px in a {width}px viewport"


@pytest.mark.parametrize("mode", ["600", "375", "dark"])
@pytest.mark.parametrize("name", sorted(EMAILS))
def test_email_screens(browser: object, tmp_path: Path, name: str, mode: str) -> None:
    width = 375 if mode == "375" else 600
    page = _open(browser, tmp_path, name, EMAILS[name][0], width, dark=mode == "dark")
    folder = ARTIFACTS / "email"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}-{mode}.png"), full_page=True)  # type: ignore[attr-defined]
    _no_overflow(page, name, width)
    page.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["reference", "takes-240", "arabic-rtl"])
def test_coverage_block_at_375(browser: object, tmp_path: Path, name: str) -> None:
    html, brief = EMAILS[name]
    assert brief is not None
    page = _open(browser, tmp_path, name, html, 375)
    takes = page.evaluate(  # type: ignore[attr-defined]
        """() => [...document.querySelectorAll('div.take')].map(d => {
            const [who, text] = d.querySelectorAll('p'); const a = who.getBoundingClientRect(), b = text.getBoundingClientRect();
            const lens = who.querySelector('span.muted');
            return {whoBottom: a.bottom, textTop: b.top, left: a.left, textLeft: b.left, width: d.getBoundingClientRect().width,
                    lens: lens ? lens.textContent : ''}; })"""
    )
    assert takes
    for t in takes:
        # One column: the outlet line sits above the take, both full width.
        assert t["textTop"] >= t["whoBottom"] - 0.5 and abs(t["left"] - t["textLeft"]) < 1 and t["width"] > 300
    lenses = [t["lens"] for t in takes[: min(K, len({lens.name for lens in brief.lenses if lens.takes}))]]
    assert len(set(lenses)) == len(lenses), lenses
    regions = page.evaluate("document.querySelector('p.regions').textContent")  # type: ignore[attr-defined]
    for region, _n in brief.region_distribution():
        assert region in " ".join(regions.split()), region
    page.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", ["600", "375", "dark"])
@pytest.mark.parametrize("name", sorted(SITE))
def test_site_screens(browser: object, tmp_path: Path, name: str, mode: str) -> None:
    width = 375 if mode == "375" else 600 if mode == "600" else 1000
    page = _open(browser, tmp_path, name, SITE[name], width, dark=mode == "dark")
    folder = ARTIFACTS / "site"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}-{mode}.png"), full_page=True)  # type: ignore[attr-defined]
    _no_overflow(page, name, width)
    page.close()  # type: ignore[attr-defined]


def _axe(page: object) -> list[dict[str, object]]:
    page.add_script_tag(content=AXE.read_text(encoding="utf-8"))  # type: ignore[attr-defined]
    result = page.evaluate(  # type: ignore[attr-defined]
        "async () => JSON.stringify((await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})).violations)"
    )
    return list(json.loads(result))


ALL = {**{f"email-{k}": v[0] for k, v in EMAILS.items()}, **{f"site-{k}": v for k, v in SITE.items()}}


@pytest.mark.skipif(not AXE.exists(), reason="axe-core not installed (npm install --prefix tests/.node axe-core)")
@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
@pytest.mark.parametrize("name", sorted(ALL))
def test_axe_wcag_a_aa(browser: object, tmp_path: Path, name: str, dark: bool) -> None:
    page = _open(browser, tmp_path, name, ALL[name], 600, dark=dark)
    violations = _axe(page)
    page.close()  # type: ignore[attr-defined]
    assert not violations, [(v["id"], [n["html"][:120] for n in v["nodes"][:3]]) for v in violations]  # type: ignore[index]
