"""A terminal feed reader shows whole takes: newsboat in tmux over the Atom feed.

Skipped where newsboat or tmux is absent (``.ci/run`` installs newsboat).
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from publisher.render.feed_entries import FeedStory
from publisher.render.feeds import render_feeds
from tests.render.test_newsletter import load, make_config

NEWSBOAT, TMUX = shutil.which("newsboat"), shutil.which("tmux")
TAKE = "Lead account of Anthropic's June 10 letter to Senators Tim Scott and Elizabeth Warren, disclosed June 24."

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(NEWSBOAT is None or TMUX is None, reason="newsboat or tmux is not installed"),
]


def _tmux(*args: str) -> str:
    assert TMUX is not None
    return subprocess.run([TMUX, *args], capture_output=True, text=True, timeout=30, check=True).stdout


def _capture(session: str) -> str:
    return _tmux("capture-pane", "-p", "-J", "-t", session, "-S", "-200")


def _until(session: str, needle: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = _capture(session)
        if needle in screen:
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} never showed:\n{screen}")


def test_newsboat_shows_a_whole_take(tmp_path: Path) -> None:
    cfg = make_config()
    at = dt.datetime(2026, 6, 24, 9, 0, tzinfo=dt.timezone.utc)
    feed = tmp_path / "feed.atom"
    feed.write_bytes(render_feeds([FeedStory(load("reference.txt"), at, at)], cfg)["feed.atom"])
    (tmp_path / "urls").write_text(f'"exec:cat {feed}"\n')
    (tmp_path / "config").write_text("show-read-feeds yes\nconfirm-exit no\ntext-width 80\n")
    session = f"nb{time.monotonic_ns()}"
    command = f"{NEWSBOAT} -r -u {tmp_path / 'urls'} -c {tmp_path / 'cache.db'} -C {tmp_path / 'config'}"
    _tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "200", "env", "TERM=xterm-256color", "LANG=C.UTF-8", "sh", "-c", command)
    try:
        _until(session, "(1/1)")  # the feed is loaded: one unread article
        _tmux("send-keys", "-t", session, "Enter")
        _until(session, "Anthropic accuses Alibaba")
        _tmux("send-keys", "-t", session, "Enter")
        screen = _until(session, "Summary")
        seen = [screen]
        for _ in range(20):  # page down through the article
            if "How the world covered it" in "".join(seen) and TAKE in re.sub(r"\s+", " ", "".join(seen[-2:])):
                break
            _tmux("send-keys", "-t", session, "NPage")
            time.sleep(0.3)
            seen.append(_capture(session))
        screen = "\n".join(seen)
        # Wrapped, not cut at a table column: the whole sentence is on screen.
        flat = re.sub(r"\s+", " ", "".join(seen[-2:]))
        assert "How the world covered it" in screen and TAKE in flat, screen
        (Path(__file__).resolve().parents[2] / "tests" / "artifacts").mkdir(exist_ok=True)
        (Path(__file__).resolve().parents[2] / "tests" / "artifacts" / "newsboat.txt").write_text(screen)
    finally:
        subprocess.run([TMUX, "kill-session", "-t", session], capture_output=True, timeout=30, check=False)
