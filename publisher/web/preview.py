"""An issue as a recipient gets it: the exact message a send builds, parsed back, and its dark-mode view."""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from ..core.config import Config
from ..mail.message import MessageTemplate
from ..render.email import RenderedIssue

# Gmail cuts messages whose HTML part is larger than about 102 KB.
GMAIL_CLIP_BYTES = 102 * 1024
PREVIEW_RECIPIENT = "reader@example.com"


@dataclass(frozen=True)
class Preview:
    """One issue as a recipient would get it, parsed back from the MIME bytes."""

    kind: str
    key: str
    subject: str
    preheader: str
    sender: str
    html: str
    text: str
    html_bytes: int
    message_bytes: int
    content_hash: str

    @property
    def clip_ratio(self) -> float:
        return self.html_bytes / GMAIL_CLIP_BYTES

    @property
    def clipped(self) -> bool:
        return self.html_bytes > GMAIL_CLIP_BYTES


def preview_from_issue(issue: RenderedIssue, cfg: Config, *, sent_at: datetime) -> Preview:
    """Build the exact message a send builds, for a sample recipient, and read it back."""
    template = MessageTemplate.build(issue, cfg, sent_at=sent_at)
    domain = cfg.email.sender_address.rpartition("@")[2] or "localhost"
    raw = template.personalize(
        to=PREVIEW_RECIPIENT,
        unsubscribe_url=cfg.site.url("unsubscribe?t=preview"),
        message_id=f"<preview.{issue.content_hash[:24]}@{domain}>",
    )
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    html_part = msg.get_body(preferencelist=("html",))
    text_part = msg.get_body(preferencelist=("plain",))
    # CRLF is the wire's line ending, not the content's; mail clients show LF.
    html = html_part.get_content().replace("\r\n", "\n") if isinstance(html_part, EmailMessage) else ""
    text = text_part.get_content().replace("\r\n", "\n") if isinstance(text_part, EmailMessage) else ""
    return Preview(
        kind=issue.kind,
        key=issue.key,
        subject=str(msg.get("Subject", issue.subject)).strip(),
        preheader=issue.preheader,
        sender=str(msg.get("From", "")),
        html=html,
        text=text,
        html_bytes=len(html.encode("utf-8")),
        message_bytes=len(raw),
        content_hash=issue.content_hash,
    )


_DARK_QUERY = re.compile(r"\(\s*prefers-color-scheme\s*:\s*dark\s*\)", re.I)
_LIGHT_QUERY = re.compile(r"\(\s*prefers-color-scheme\s*:\s*light\s*\)", re.I)


def force_dark(html: str) -> str:
    """The email as a dark-mode client shows it: its dark media rules made unconditional."""
    html = _DARK_QUERY.sub("(min-width: 0px)", html)
    html = _LIGHT_QUERY.sub("(max-width: 0px)", html)
    meta = '<meta name="color-scheme" content="dark"><style>:root{color-scheme:dark}</style>'
    if re.search(r"<head[^>]*>", html, re.I):
        return re.sub(r"(<head[^>]*>)", lambda m: m.group(1) + meta, html, count=1, flags=re.I)
    return meta + html
