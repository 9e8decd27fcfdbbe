"""Debian's Chromium for the browser tests: where it is, how it starts here, one browser per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Headless as root, and none of the background calls this closed network refuses.
LAUNCH_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed at /usr/bin/chromium (.ci/run installs it)")


def launch(pw: Any) -> Any:
    """A Chromium from a Playwright instance (``sync_playwright()``)."""
    return pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch(pw)
        yield b
        b.close()
