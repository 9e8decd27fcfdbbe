"""SpamAssassin (Debian package, local rules only: no network tests) scores a
story and a digest message as sent; skipped where spamassassin is absent."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from publisher.mail.message import MessageTemplate
from publisher.render.email import RenderedIssue, render_digest, render_story
from tests.render.test_newsletter import SENT_AT, big_brief, digest_briefs, load, make_config

SPAMASSASSIN = shutil.which("spamassassin")
LIMIT = 0.5

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(SPAMASSASSIN is None, reason="spamassassin is not installed (apt-get install spamassassin)"),
]


def _score(issue: RenderedIssue) -> tuple[float, str]:
    cfg = make_config()
    raw = MessageTemplate.build(issue, cfg, sent_at=SENT_AT).personalize(
        to="reader@example.net",
        unsubscribe_url="https://briefs.example.org/unsubscribe?t=abc.DEF_123",
        message_id="<17.4711.0c5e9a1f@briefs.example.org>",
    )
    data = raw if isinstance(raw, bytes) else str(raw).encode()
    assert SPAMASSASSIN is not None
    out = subprocess.run([SPAMASSASSIN, "-L", "-t"], input=data, capture_output=True, timeout=300, check=True).stdout.decode("utf-8", "replace")
    match = re.search(r"^X-Spam-Status: \w+, score=(-?[\d.]+)", out, re.M)
    assert match, out[:2000]
    return float(match.group(1)), out[out.find("Content analysis details"):]


@pytest.mark.parametrize("kind", ["story", "story-240", "digest"])
def test_spamassassin_score(kind: str) -> None:
    cfg = make_config()
    issue = {
        "story": lambda: render_story(load("reference.txt"), cfg),
        "story-240": lambda: render_story(big_brief(), cfg),
        "digest": lambda: render_digest(digest_briefs(), cfg, period_key="2026-06-25", period_label="25 June 2026"),
    }[kind]()
    score, report = _score(issue)
    assert score <= LIMIT, report
