"""The desk in a real browser: Debian's Chromium driven by Playwright.

Sign in, open a story preview, switch to mobile and dark, send a test to an
aiosmtpd server started here, approve. Screenshots go to tests/artifacts/
(gitignored) for a person to look at after a CI run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from publisher import store
from publisher.publish.pipeline import Pipeline
from publisher.core.config import Config
from publisher.store import schema

from tests.support.desk import PASSWORD, make_config, write_public
from tests.support.files import ROOT, SAMPLES
from tests.support.browser import launch, needs_chromium
from tests.support.live import LiveServer
from tests.support.ports import free_port

ARTIFACTS = ROOT / "tests" / "artifacts" / "desk"
BRIEFS = SAMPLES

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    needs_chromium,
]


class Inbox:
    """aiosmtpd handler that keeps what it receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.arrived = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content or envelope.content)))
        self.arrived.set()
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def _config(tmp: Path, smtp_port: int) -> Config:
    import dataclasses

    cfg = make_config(tmp)
    smtp_cfg = dataclasses.replace(cfg.smtp, host="127.0.0.1", port=smtp_port, security="none", timeout=10.0)
    return dataclasses.replace(cfg, smtp=smtp_cfg)


def _pipeline(cfg: Config, engine: sa.Engine) -> Publisher:
    return Pipeline(cfg, engine)


@pytest.fixture
def desk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smtp: tuple[Inbox, int]) -> Iterator[tuple[LiveServer, Config, sa.Engine, Inbox]]:
    inbox, port = smtp
    monkeypatch.setenv("PUBLISHER_SIGNING_KEY", "s" * 64)
    monkeypatch.setenv("PUBLISHER_DESK_PASSWORD", PASSWORD)
    monkeypatch.setenv("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    cfg = _config(tmp_path, port)
    # Publish an edit on the first scan that sees it.
    cfg = dataclasses.replace(cfg, schedule=dataclasses.replace(cfg.schedule, quiet_period=0.0))
    write_public(cfg)
    shutil.copy(BRIEFS / "india-upi-credit-lines.md", cfg.paths.briefs / "india-upi-credit-lines.md")
    engine = store.connect(cfg.store_url)
    publisher = _pipeline(cfg, engine)
    publisher.build_all()
    # The first build publishes what is already there; a brief that arrives
    # afterwards gets an email issue awaiting approval, as in the service.
    shutil.copy(BRIEFS / "anthropic-alibaba-claude-distillation.txt", cfg.paths.briefs / "anthropic-alibaba-claude-distillation.txt")
    # A new brief that does not parse: the desk must show it, with its error.
    (cfg.paths.briefs / "half-written.md").write_text("# Half written\n\n**Meta:** date: 2026-06-31\n")
    publisher.sync()
    srv = LiveServer(cfg, engine, publisher)
    srv.publisher = publisher  # type: ignore[attr-defined]
    srv.start()
    yield srv, cfg, engine, inbox
    srv.stop()
    engine.dispose()


def _frames_loaded(page: Any) -> None:
    """Screenshots only once every email frame has painted its content."""
    from playwright.sync_api import expect

    for sel in ("iframe.w600", "iframe.w375"):
        if page.locator(sel).count():
            expect(page.frame_locator(sel).locator("body")).to_contain_text("nsubscribe")


def _story_slug(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(schema.issues.c.key).where(schema.issues.c.kind == "story", schema.issues.c.state == "awaiting_approval").order_by(schema.issues.c.key)
        ).first()
    assert row is not None, "the build left no story awaiting approval"
    return str(row.key)


def test_editor_previews_tests_and_approves(desk: tuple[LiveServer, Config, sa.Engine, Inbox]) -> None:
    from playwright.sync_api import expect, sync_playwright

    srv, cfg, engine, inbox = desk
    slug = _story_slug(engine)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            context = browser.new_context(viewport={"width": 1300, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(20_000)

            # Sign in: the desk sends a stranger to the login page first.
            page.goto(f"{srv.url}/desk/")
            expect(page).to_have_url(f"{srv.url}/desk/login")
            page.fill("input[name=password]", PASSWORD)
            page.click("form[action='/desk/login'] button")
            expect(page.locator("table.stories")).to_be_visible()
            expect(page.locator("#broken")).to_contain_text("half-written.md:3")
            rows = page.locator("table.stories tbody tr")
            expect(rows.first).to_contain_text("awaiting approval")  # waiting stories come first
            page.screenshot(path=str(ARTIFACTS / "01-stories.png"), full_page=True)

            # Preview: inbox line, both widths side by side.
            page.click(f"a[href='/desk/story/{slug}']")
            expect(page.locator("#subject")).not_to_be_empty()
            expect(page.locator("iframe.w600")).to_be_visible()
            expect(page.locator("iframe.w375")).to_be_visible()
            assert page.locator("iframe.w600").bounding_box()["width"] == pytest.approx(600, abs=4)  # type: ignore[index]
            assert page.locator("iframe.w375").bounding_box()["width"] == pytest.approx(375, abs=4)  # type: ignore[index]
            email_frame = page.frame_locator("iframe.w600")
            expect(email_frame.locator("body")).to_contain_text("Unsubscribe", ignore_case=True)
            expect(page.locator("#text-part")).to_contain_text("unsubscribe", ignore_case=True)
            _frames_loaded(page)
            page.screenshot(path=str(ARTIFACTS / "02-preview.png"), full_page=True)

            # Mobile only.
            page.click("#view-mobile")
            expect(page.locator("iframe.w375")).to_be_visible()
            expect(page.locator("iframe.w600")).to_have_count(0)
            _frames_loaded(page)
            page.screenshot(path=str(ARTIFACTS / "03-mobile.png"), full_page=True)

            # Dark: the email's own dark-mode rules take effect.
            page.click("#view-dark")
            dark_bg = page.frame_locator("iframe.w375").locator("body").evaluate("b => getComputedStyle(b).backgroundColor")
            light = browser.new_context().new_page()
            _frames_loaded(page)
            page.screenshot(path=str(ARTIFACTS / "04-dark.png"), full_page=True)
            assert dark_bg == "rgb(21, 24, 28)", dark_bg

            # The desk itself in a dark-mode browser.
            dark_ctx = browser.new_context(color_scheme="dark", viewport={"width": 390, "height": 844}, storage_state=context.storage_state())
            phone = dark_ctx.new_page()
            phone.goto(f"{srv.url}/desk/story/{slug}?view=dark")
            expect(phone.locator("#subject")).not_to_be_empty()
            page_bg = phone.evaluate("() => getComputedStyle(document.body).backgroundColor")
            assert page_bg != "rgb(255, 255, 255)"
            _frames_loaded(phone)
            phone.screenshot(path=str(ARTIFACTS / "05-phone-dark.png"), full_page=True)
            light.close()

            # Send a test to the SMTP server this test runs.
            page.fill("input[name=address]", "editor@example.org")
            with page.expect_navigation():
                page.click("#send-test")
            expect(page.locator("#flash")).to_contain_text("Test sent to editor@example.org")
            assert inbox.arrived.wait(10)
            mail_from, rcpts, raw = inbox.messages[0]
            assert rcpts == ["editor@example.org"]
            assert mail_from == cfg.email.sender_address
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            assert str(msg["Subject"]).startswith("[TEST]")
            assert msg["List-Unsubscribe-Post"] is None  # the desk config is http: no one-click claim (RFC 8058)
            page.screenshot(path=str(ARTIFACTS / "06-test-sent.png"), full_page=True)

            # Approve: the issue is queued for delivery.
            # A full-page screenshot resizes the viewport for a moment; a click
            # fired meanwhile can be lost, so settle the button in view first.
            page.locator("#approve").scroll_into_view_if_needed()
            expect(page.locator("#approve-form")).to_contain_text("send to 0 reader(s)")
            page.check("#approve-confirm")
            with page.expect_navigation():
                page.click("#approve")
            expect(page.locator("#flash")).to_contain_text("Approved: story")
            expect(page.locator("#history")).to_contain_text("approved")
            expect(page.locator("#state")).to_have_text("approved")
            page.screenshot(path=str(ARTIFACTS / "07-approved.png"), full_page=True)
        finally:
            browser.close()
    with engine.connect() as conn:
        state = conn.execute(sa.select(schema.issues.c.state).where(schema.issues.c.kind == "story", schema.issues.c.key == slug)).scalar_one()
    assert state == "approved"
    assert len(inbox.messages) == 1  # only the test; approval alone sends nothing here


def test_open_preview_reloads_when_the_brief_changes_on_disk(desk: tuple[LiveServer, Config, sa.Engine, Inbox]) -> None:
    from playwright.sync_api import expect, sync_playwright

    srv, cfg, engine, _ = desk
    slug = _story_slug(engine)
    with engine.connect() as conn:
        path, old_hash = conn.execute(sa.select(schema.stories.c.path, schema.stories.c.content_hash).where(schema.stories.c.slug == slug)).one()
    brief = cfg.paths.briefs / path if not Path(path).is_absolute() else Path(path)
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            page.goto(f"{srv.url}/desk/login")
            page.fill("input[name=password]", PASSWORD)
            page.click("form[action='/desk/login'] button")
            expect(page.locator("table.stories")).to_be_visible()
            page.goto(f"{srv.url}/desk/story/{slug}")
            expect(page.locator("#subject")).not_to_be_empty()
            page.evaluate("() => { window.__marker = 1 }")
            # An editor fixes a typo: the summary gains a sentence.
            text = brief.read_text(encoding="utf-8")
            marker = "Live-refresh marker sentence."
            brief.write_text(text.replace("## Summary\n", f"## Summary\n{marker} ", 1), encoding="utf-8")
            deadline_tries = 50
            while deadline_tries:
                srv.publisher.sync()  # type: ignore[attr-defined]
                with engine.connect() as conn:
                    new_hash = conn.execute(sa.select(schema.stories.c.content_hash).where(schema.stories.c.slug == slug)).scalar_one()
                if new_hash != old_hash:
                    break
                deadline_tries -= 1
                page.wait_for_timeout(200)
            assert new_hash != old_hash, "the pipeline never picked up the edit"
            # The open page reloads by itself (the marker on the old document is gone)...
            page.wait_for_function("() => window.__marker === undefined")
            # ...and shows the edited text, rendered through the send path.
            expect(page.locator("#text-part")).to_contain_text(marker)
            expect(page.frame_locator("iframe.w600").locator("body")).to_contain_text(marker)
            page.screenshot(path=str(ARTIFACTS / "08-live-refresh.png"), full_page=True)
        finally:
            browser.close()
