"""A real aiosmtpd server that records what it accepts, and stores with subscribers and approved issues."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from sqlalchemy.engine import Engine

from publisher.briefs import load_brief
from publisher.core.config import Config
from publisher.render.email import RenderedIssue, render_story, unsubscribe_placeholder
from publisher.store import connect
from publisher.store.schema import issues, subscribers

from .files import DATA
from .ports import free_port
from .project import build_config
from .waiting import wait_until

__all__ = ["free_port", "wait_until"]  # re-exported for the delivery tests

T0 = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc)


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    at: float


@dataclass
class Sink:
    """An aiosmtpd handler that records what it accepted.

    ``rcpt`` maps an address to a reply for RCPT TO (e.g. a 4xx for the
    first N tries via ``temp_fail``); ``drop_on`` lists DATA counts at which
    the server aborts the connection before replying (message not kept).
    """

    messages: list[Received] = field(default_factory=list)
    permanent: set[str] = field(default_factory=set)
    temp_fail: dict[str, int] = field(default_factory=dict)
    drop_on: set[int] = field(default_factory=set)
    keep_content: bool = True
    pipelining: bool = False  # advertise RFC 2920 (aiosmtpd reads pipelined commands in order anyway)
    # Scripted per stage: replies used up in order, then the server accepts again.
    mail_from_replies: list[str] = field(default_factory=list)  # e.g. "550 5.7.1 sender rejected"
    data_replies: list[str] = field(default_factory=list)  # after the data, e.g. "552 5.3.4 policy"
    keep_then_drop: set[int] = field(default_factory=set)  # DATA counts kept, then the connection dropped
    eightbit: bool = True  # advertise 8BITMIME
    smtputf8: bool = True  # advertise SMTPUTF8
    # After a scripted 5xx DATA reply, other connections wait for their DATA
    # replies until the refused connection ends (at most hold_timeout s): the
    # worst case for a sender that must stop the others between messages,
    # whatever the threads' timing.
    hold_others_after_refusal: bool = False
    hold_timeout: float = 10.0
    data_count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _refused: Any = field(default=None, init=False, repr=False)  # the session that got the scripted refusal
    _released: asyncio.Event | None = field(default=None, init=False, repr=False)

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        dropped = set()
        if not self.eightbit:
            dropped.add("8BITMIME")
        if not self.smtputf8:
            dropped.add("SMTPUTF8")
        return [r for r in responses if r[4:] not in dropped]

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]) -> str:
        with self.lock:
            scripted = self.mail_from_replies.pop(0) if self.mail_from_replies else None
        if scripted:
            return scripted
        if "BODY=8BITMIME" in mail_options and not self.eightbit:
            return "555 5.5.4 BODY=8BITMIME not offered"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        if address in self.permanent:
            return "550 5.1.1 no such user"
        if self.temp_fail.get(address, 0) > 0:
            self.temp_fail[address] -= 1
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.data_count += 1
            n = self.data_count
        if n in self.drop_on:
            server.transport.abort()
            return "250 never seen"
        with self.lock:
            scripted = self.data_replies.pop(0) if self.data_replies else None
        if scripted:
            if self.hold_others_after_refusal and scripted.startswith("5") and self._refused is None:
                self._refused, self._released = session, asyncio.Event()  # handlers run in the server's loop
            return scripted
        if self._released is not None and session is not self._refused:
            try:
                await asyncio.wait_for(self._released.wait(), self.hold_timeout)
            except asyncio.TimeoutError:
                pass  # the refused connection never quit: answer anyway (the test's bound decides)
        with self.lock:
            self.messages.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content if self.keep_content else b"", time.monotonic())
            )
        if n in self.keep_then_drop:
            server.transport.abort()  # kept, but the client never hears so
        return "250 2.0.0 accepted"

    def connection_closed(self, session: Any) -> None:
        """Called by :class:`_Server` in the server's loop, whether the client quit or hung up."""
        if session is self._refused and self._released is not None:
            self._released.set()

    def recipients(self) -> collections.Counter[str]:
        with self.lock:
            return collections.Counter(r for m in self.messages for r in m.rcpt_tos)


class _Server(SMTP):
    """aiosmtpd's server, telling the sink when a connection ends (it has no hook for that)."""

    def connection_lost(self, error: Exception | None) -> None:
        session = self.session
        super().connection_lost(error)
        if isinstance(self.event_handler, Sink):
            self.event_handler.connection_closed(session)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _Server(self.handler, **self.SMTP_kwargs)


@contextmanager
def smtp_server(sink: Sink) -> Iterator[int]:
    port = free_port()
    controller = _Controller(sink, hostname="127.0.0.1", port=port, enable_SMTPUTF8=True)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def make_cfg(tmp: Path, *, port: int | None = None, **smtp: Any) -> Config:
    """A delivery config: SMTP to ``port`` on loopback (else the Maildir outbox), fast retries."""
    section: dict[str, Any] = {
        "host": smtp.pop("host", "127.0.0.1") if port else "",
        "port": port or 25,
        "security": smtp.pop("security", "none"),
        "connections": smtp.pop("connections", 2),
        "retry_backoff": smtp.pop("retry_backoff", 0.01),
        "timeout": 5.0,
        **smtp,
    }
    return build_config(
        tmp, site={"base_url": "https://news.example.org/"}, smtp=section, email={"sender_address": "briefs@news.example.org"}
    )


def make_store(cfg: Config) -> Engine:
    return connect(cfg.store_url)


def add_subscribers(engine: Engine, n: int, *, cadence: str = "instant", status: str = "active", start: int = 0) -> list[str]:
    emails = [f"reader{i:06d}@example.net" for i in range(start, start + n)]
    with engine.begin() as conn:
        for i in range(0, n, 1000):
            conn.execute(
                subscribers.insert(),
                [
                    {"email": e, "status": status, "cadence": cadence, "bounces": 0, "created_at": T0, "confirmed_at": T0}
                    for e in emails[i : i + 1000]
                ],
            )
    return emails


def add_story_issue(engine: Engine, cfg: Config, *, state: str = "approved", brief_path: Path = DATA / "reference.txt") -> int:
    brief = load_brief(str(brief_path), base_url=cfg.site.base_url)
    rendered = render_story(brief, cfg)
    with engine.begin() as conn:
        result = conn.execute(
            issues.insert().values(
                kind="story",
                key=brief.slug,
                state=state,
                subject=rendered.subject,
                preheader=rendered.preheader,
                html=rendered.html,
                text=rendered.text,
                content_hash=rendered.content_hash,
                created_at=T0,
                updated_at=T0,
            )
        )
        pk = result.inserted_primary_key
        assert pk is not None
        return int(pk[0])


def synthetic_issue(*, kind: str = "story", key: str = "harbour-strike") -> RenderedIssue:
    """A small issue built by hand: the delivery tests do not depend on the renderer.

    It has what makes wire form tricky: HTML lines starting with a dot, non-ASCII
    text, the unsubscribe placeholder in both bodies and an '&' next to it.
    """
    content_hash = hashlib.sha256(f"{kind}:{key}".encode()).hexdigest()
    unsub = unsubscribe_placeholder(content_hash)
    html = (
        "<!doctype html><html><head><style>\n.lead { font-weight: bold }\n.foot{color:#666}\n</style></head>"
        f"<body><p class=\"lead\">Harbour strike ends — Zürich, 東京 & São Paulo react</p>\n"
        f".\n<p><a href=\"{unsub}\">Unsubscribe</a> &amp; <a href=\"https://news.example.org/\">home</a></p></body></html>\n"
    )
    text = f"Harbour strike ends — Zürich, 東京 & São Paulo react\n.\n..two dots\n\nUnsubscribe: {unsub}\n"
    kind_lit: Literal["story", "digest"] = "digest" if kind == "digest" else "story"
    return RenderedIssue(
        kind=kind_lit, key=key, subject="Harbour strike ends: how the world covered it", preheader="Six regions",
        mjml="", html=html, text=text, content_hash=content_hash,
    )


def add_issue(engine: Engine, *, state: str = "approved", kind: str = "story", key: str = "harbour-strike", cadence: str | None = None) -> int:
    rendered = synthetic_issue(kind=kind, key=key)
    with engine.begin() as conn:
        result = conn.execute(
            issues.insert().values(
                kind=kind, key=key, state=state, cadence=cadence or ("instant" if kind == "story" else "daily"), subject=rendered.subject, preheader=rendered.preheader,
                html=rendered.html, text=rendered.text, content_hash=rendered.content_hash,
                created_at=T0, updated_at=T0,
            )
        )
        pk = result.inserted_primary_key
        assert pk is not None
        return int(pk[0])


def issue_state(engine: Engine, issue_id: int) -> str:
    with engine.connect() as conn:
        return str(conn.execute(sa.select(issues.c.state).where(issues.c.id == issue_id)).scalar_one())
