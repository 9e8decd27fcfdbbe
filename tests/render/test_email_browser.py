"""The email HTML in a real browser: headless Chromium at phone and desktop widths.

Screenshots land in tests/artifacts/newsletter/ (gitignored) for a person to look at.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from publisher.render.email import render_digest, render_story, web_version
from tests.support.browser import browser, needs_chromium  # noqa: F401  (browser is a fixture)
from tests.support.files import ROOT
from tests.render.test_newsletter import big_brief, digest_briefs, load, make_config

ARTIFACTS = ROOT / "tests" / "artifacts" / "newsletter"

pytestmark = [
    pytest.mark.slow,
    needs_chromium,
]


def _pages() -> dict[str, str]:
    cfg = make_config()
    issues = {
        "reference": render_story(load("reference.txt"), cfg),
        "hostile": render_story(load("hostile.md"), cfg),
        "non-latin": render_story(load("non_latin.md"), cfg),
        "big-240": render_story(big_brief(), cfg),
        "digest": render_digest(digest_briefs(), cfg, period_key="2026-06-25", period_label="25 June 2026"),
    }
    return {name: web_version(issue, cfg)[0] for name, issue in issues.items()}


PAGES = _pages()


@pytest.mark.parametrize("width", [375, 600])
@pytest.mark.parametrize("name", sorted(PAGES))
def test_no_horizontal_overflow(browser: object, tmp_path: Path, name: str, width: int) -> None:
    page_file = tmp_path / f"{name}.html"
    page_file.write_text(PAGES[name], encoding="utf-8")
    page = browser.new_page(viewport={"width": width, "height": 900})  # type: ignore[attr-defined]
    # The email must render with no network at all (images are optional).
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
    page.goto(page_file.as_uri())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
    scroll_width, inner_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll_width <= inner_width, f"{name} overflows at {width}px: {scroll_width}px wide"
    # No element pokes out to the right either (scrollWidth misses overflow:hidden parents).
    widest = page.evaluate(
        "Math.max(...[...document.querySelectorAll('body *')].map(e => e.getBoundingClientRect().right))"
    )
    assert widest <= width + 0.5, f"{name}: an element ends at {widest}px in a {width}px viewport"
    page.close()


def test_dark_mode_keeps_text_readable(browser: object, tmp_path: Path) -> None:
    page_file = tmp_path / "reference.html"
    page_file.write_text(PAGES["reference"], encoding="utf-8")
    page = browser.new_page(viewport={"width": 600, "height": 900}, color_scheme="dark")  # type: ignore[attr-defined]
    page.goto(page_file.as_uri())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "reference-600-dark.png"), full_page=True)
    colours = page.evaluate(
        """() => {
            const lum = c => { const [r, g, b] = c.match(/\\d+/g).map(Number);
              const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
              return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
            const bg = lum(getComputedStyle(document.body).backgroundColor);
            const texts = [...document.querySelectorAll('h1, h2, td, th, p, li')].filter(e => e.innerText.trim());
            return {bg: bg, ratios: texts.map(e => { const l = lum(getComputedStyle(e).color);
              return (Math.max(l, bg) + 0.05) / (Math.min(l, bg) + 0.05); })};
        }"""
    )
    # The dark palette really applies (a light page would pass the contrast check too)...
    assert colours["bg"] < 0.05, f"background luminance {colours['bg']:.2f} in dark mode"
    # ...and every text element stays readable on it.
    ratios = colours["ratios"]
    assert ratios and min(ratios) >= 4.5, f"lowest contrast ratio in dark mode: {min(ratios):.2f}"
