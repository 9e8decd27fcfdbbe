"""The MIME message of an issue, serialised once; per recipient only bytes are joined.

Why the unsubscribe placeholder can never be forged by a brief: it embeds a
digest of everything that shaped the issue (brief bytes, config, templates),
so a brief would have to contain a hash of itself. Bodies are sent as 8bit
UTF-8 with every line kept under 998 octets, so no transfer encoding can
split a placeholder (quoted-printable would wrap it, base64 would hide it).
A relay without 8BITMIME gets the personalised message re-encoded
(:func:`to_seven_bit`), which only that relay pays for.
"""

from __future__ import annotations

import email.encoders
import functools
import email.policy
import re
from email.parser import BytesParser
from dataclasses import dataclass
from html import escape
from typing import Protocol
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formataddr, format_datetime, make_msgid

from ..core.addresses import InvalidAddress, check_sendable, header_address
from ..core.config import Config
from ..core.errors import DeliveryError, RenderError
from ..core.urls import is_http_url
from ..render.email import MAX_SUBJECT, RenderedIssue, unsubscribe_placeholder
from ..render.text import clean_line

EXAMPLE_RECIPIENT = "reader@example.org"


class Personalizer(Protocol):
    """What a sender needs of a message template (:class:`MessageTemplate`, or its wire form)."""

    def personalize(self, *, to: str, unsubscribe_url: str, message_id: str, test: bool = False) -> bytes: ...


def message_domain(address: str) -> str:
    return address.rpartition("@")[2] or "localhost"


def boundary(content_hash: str) -> str:
    return f"=_pub_{content_hash[:32]}"


# The per-recipient slots, in the order of :meth:`MessageTemplate.values`.
SLOTS = ("subject", "to", "message_id", "list_unsubscribe", "unsub_text", "unsub_html")
SUBJECT, TO, MESSAGE_ID, LIST_UNSUBSCRIBE, UNSUB_TEXT, UNSUB_HTML = range(len(SLOTS))

_CRLF = b"\r\n"
_SMTP_POLICY = email.policy.SMTP.clone(max_line_length=78)
_UNSAFE = re.compile(r"[\x00-\x20\x7f\x85\u2028\u2029]")
_MSGID = re.compile(r"^<[^\s<>@]+@[^\s<>@]+>$")
_BAD_URL_CHARS = re.compile(r"[\s<>\"'\\^`{|}]")


def _header_bytes(name: str, value: str) -> bytes:
    """One header, folded and RFC 2047-encoded as the email package does it."""
    msg = EmailMessage(policy=_SMTP_POLICY)
    msg[name] = value
    return msg.as_bytes(policy=_SMTP_POLICY).split(_CRLF + _CRLF, 1)[0]


@dataclass(frozen=True)
class MessageTemplate:
    """A pre-serialised message; ``personalize`` only joins bytes.

    ``chunks`` and ``slots`` interleave: chunk0 slot0 chunk1 slot1 ... chunkN.
    Every slot value is non-empty and free of CR and LF (:meth:`values`
    refuses anything else), which :mod:`publisher.mail.wire` relies on.
    """

    issue_kind: str
    issue_key: str
    chunks: tuple[bytes, ...]
    slots: tuple[int, ...]  # indexes into :meth:`values`, i.e. :data:`SLOTS`
    _subject: bytes
    _test_subject: bytes
    _mailto: bytes  # the List-Unsubscribe tail after the URL (", <mailto:...>"), or b""

    @classmethod
    def build(cls, issue: RenderedIssue, cfg: Config, *, sent_at: datetime) -> MessageTemplate:
        if sent_at.tzinfo is None:
            raise RenderError(f"{issue.kind} {issue.key}", "sent_at must be timezone-aware")
        token = unsubscribe_placeholder(issue.content_hash).encode("ascii")
        msg = EmailMessage(policy=_SMTP_POLICY)
        msg["From"] = Address(cfg.email.sender_name, addr_spec=cfg.email.sender_address)
        if cfg.email.reply_to:
            msg["Reply-To"] = Address(addr_spec=cfg.email.reply_to)
        msg["Date"] = format_datetime(sent_at)
        msg["List-Id"] = f"{clean_line(cfg.site.title)} <{cfg.email.list_id}>"
        if one_click(cfg):
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg["X-Publisher-Issue"] = f"{issue.kind}/{issue.key}"
        msg.set_content(issue.text, subtype="plain", charset="utf-8", cte="8bit")
        msg.add_alternative(issue.html, subtype="html", charset="utf-8", cte="8bit")
        msg.set_boundary(boundary(issue.content_hash))
        raw = msg.as_bytes(policy=_SMTP_POLICY)
        head, body = raw.split(_CRLF + _CRLF, 1)
        # Bodies: the text part comes first, so placeholders before the HTML
        # part's headers are in text, the rest in HTML (which needs escaping).
        html_start = body.index(b"Content-Type: text/html")
        # Per-recipient headers go first, as whole lines we write ourselves,
        # so header folding can never split a value.
        chunks: list[bytes] = [b"", _CRLF + b"To: ", _CRLF + b"Message-ID: ", _CRLF + b"List-Unsubscribe: "]
        slots: list[int] = [SUBJECT, TO, MESSAGE_ID, LIST_UNSUBSCRIBE]
        # Written as whole lines: the email package would fold a long URL into encoded words.
        extra = (
            b"List-Archive: <" + archive_url(cfg, issue.kind, issue.key).encode("ascii", "replace") + b">" + _CRLF
            + b"Feedback-ID: " + feedback_id(cfg, issue.kind, issue.key).encode("ascii") + _CRLF
        )
        pending = _CRLF + extra + head + _CRLF + _CRLF
        pos = 0
        while True:
            idx = body.find(token, pos)
            if idx < 0:
                break
            chunks.append(pending + body[pos:idx])
            slots.append(UNSUB_TEXT if idx < html_start else UNSUB_HTML)
            pending = b""
            pos = idx + len(token)
        chunks.append(pending + body[pos:])
        mailto = f", <mailto:{cfg.email.unsubscribe_mailto}?subject=unsubscribe>" if cfg.email.unsubscribe_mailto else ""
        return cls(
            issue.kind, issue.key, tuple(chunks), tuple(slots),
            _header_bytes("Subject", issue.subject),
            _header_bytes("Subject", clean_line("[TEST] " + issue.subject, MAX_SUBJECT + 7)),
            mailto.encode("ascii"),
        )

    def values(self, *, to: str, unsubscribe_url: str, message_id: str, test: bool = False) -> tuple[bytes, ...]:
        """One recipient's slot values, in :data:`SLOTS` order; raises a permanent
        DeliveryError for values that could inject headers or break the message."""
        try:
            if _UNSAFE.search(to):
                raise InvalidAddress(to, "control characters or spaces")
            check_sendable(to)
            to_header = header_address(to).encode("utf-8")
        except InvalidAddress as exc:
            raise DeliveryError(f"refusing recipient address {to!r}: {exc.message}", permanent=True) from exc
        if not _MSGID.match(message_id) or not message_id.isascii():
            raise DeliveryError(f"refusing Message-ID {message_id!r}", permanent=True)
        if not unsubscribe_url.isascii() or _BAD_URL_CHARS.search(unsubscribe_url) or not _http_url(unsubscribe_url):
            raise DeliveryError(f"refusing unsubscribe URL {unsubscribe_url!r}", permanent=True)
        url = unsubscribe_url.encode("ascii")
        list_unsub = b"<" + url + b">" + self._mailto
        return (
            self._test_subject if test else self._subject, to_header, message_id.encode("ascii"), list_unsub,
            url, url.replace(b"&", b"&amp;"),
        )

    def personalize(self, *, to: str, unsubscribe_url: str, message_id: str, test: bool = False) -> bytes:
        """The message for one recipient (see :meth:`values` for what is refused)."""
        values = self.values(to=to, unsubscribe_url=unsubscribe_url, message_id=message_id, test=test)
        chunks = self.chunks
        parts: list[bytes] = []
        for chunk, slot in zip(chunks, self.slots):
            parts.append(chunk)
            parts.append(values[slot])
        parts.append(chunks[-1])
        return b"".join(parts)


_ORIGIN = re.compile(r"https?://[^/?#]*", re.IGNORECASE)


@functools.lru_cache(maxsize=64)
def _http_origin(origin: str) -> bool:
    return is_http_url(origin)


def _http_url(url: str) -> bool:
    """:func:`is_http_url`, decided on the scheme and host alone (all urlsplit looks at),
    so the site's one origin is parsed once rather than once per reader."""
    m = _ORIGIN.match(url)
    return _http_origin(m.group()) if m else is_http_url(url)


def one_click(cfg: Config) -> bool:
    """RFC 8058 one-click needs an https unsubscribe URI; over http the header would be a false claim."""
    return cfg.site.base_url.startswith("https://")


def archive_url(cfg: Config, kind: str, key: str) -> str:
    """The web version of an issue (``public/issues/``), for List-Archive."""
    return cfg.site.url(f"issues/digest-{key}.html" if kind == "digest" else f"issues/{key}.html")


def feedback_id(cfg: Config, kind: str, key: str) -> str:
    """Gmail's Feedback-ID: issue, list and sender, so complaint rates can be told apart by issue."""
    parts = (f"{kind}-{key}", cfg.email.list_id, message_domain(cfg.email.sender_address))
    return ":".join(re.sub(r"[^A-Za-z0-9._-]", "-", p) for p in parts)


def to_seven_bit(message: bytes) -> bytes:
    """The message with every 8bit part re-encoded (quoted-printable for text, base64
    otherwise), for relays without 8BITMIME (RFC 6152). Slow path: a full parse."""
    # refold_source="none": headers are written back exactly as they came (the
    # email package would otherwise re-fold long ones, URLs into encoded words).
    policy = _SMTP_POLICY.clone(refold_source="none")
    msg = BytesParser(policy=policy).parsebytes(message)
    for part in msg.walk():
        if part.is_multipart() or str(part.get("Content-Transfer-Encoding", "7bit")).lower() not in ("8bit", "binary"):
            continue
        del part["Content-Transfer-Encoding"]
        if part.get_content_maintype() == "text":
            email.encoders.encode_quopri(part)
        else:
            email.encoders.encode_base64(part)
    return msg.as_bytes(policy=policy)


def example_message(issue: RenderedIssue, cfg: Config, *, sent_at: datetime) -> bytes:
    """The message as a fixed example reader would get it (``render --as eml``)."""
    template = MessageTemplate.build(issue, cfg, sent_at=sent_at)
    domain = cfg.email.sender_address.rpartition("@")[2] or "example.org"
    return template.personalize(
        to=EXAMPLE_RECIPIENT,
        unsubscribe_url=cfg.site.url("unsubscribe?t=EXAMPLE"),
        message_id=f"<{issue.kind}.{issue.key}.example@{domain}>",
    )



def confirmation_message(cfg: Config, to: str, confirm_url: str, *, now: datetime) -> bytes:
    """The double opt-in email: one link to a page whose button confirms."""
    # A non-ASCII local part can only be written as UTF-8 (RFC 6532): encoded
    # words inside an address are invalid, and relays refuse them.
    utf8 = not header_address(to).isascii()
    msg = EmailMessage(policy=email.policy.SMTPUTF8 if utf8 else email.policy.SMTP)
    msg["From"] = formataddr((cfg.email.sender_name, cfg.email.sender_address))
    msg["To"] = header_address(to)
    msg["Subject"] = f"Confirm your subscription to {cfg.site.title}"
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid("confirm", message_domain(cfg.email.sender_address))
    msg["Auto-Submitted"] = "auto-generated"
    if cfg.email.reply_to:
        msg["Reply-To"] = cfg.email.reply_to
    msg.set_content(
        f"Someone, probably you, asked to receive {cfg.site.title} at {to}.\n\n"
        f"To confirm, open this link and press the button:\n{confirm_url}\n\n"
        "If it was not you, ignore this email: nothing will be sent.\n\n"
        f"-- \n{cfg.email.postal_address}\n"
    )
    msg.add_alternative(
        "<!doctype html><html><body style=\"font-family:sans-serif\">"
        f"<p>Someone, probably you, asked to receive <b>{escape(cfg.site.title)}</b> at {escape(to)}.</p>"
        f"<p><a href=\"{escape(confirm_url)}\">Confirm your subscription</a></p>"
        "<p>If it was not you, ignore this email: nothing will be sent.</p>"
        f"<p style=\"color:#666;font-size:12px\">{escape(cfg.email.postal_address)}</p>"
        "</body></html>",
        subtype="html",
    )
    return msg.as_bytes()

