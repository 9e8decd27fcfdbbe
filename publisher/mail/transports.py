"""Transports: one SMTP connection reused for many messages, or the Maildir outbox.

The SMTP DATA payload is sent as-is when it is already in wire form
(:class:`~publisher.mail.wire.WireMessage` prepares it once per issue), so a
Python sender is not the bottleneck of a local relay.
"""

from __future__ import annotations

import logging
import mailbox
import re
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..core.config import Config, SmtpConfig
from ..core.addresses import idna_domain
from ..core.errors import DeliveryError
from .dkim import Signer, signer_for, unwire
from .message import to_seven_bit
from .wire import wire_data

log = logging.getLogger(__name__)

OUTBOX = "outbox"


class TransportUnavailable(DeliveryError):
    """The server cannot be reached or refuses us (connect, TLS, login): no recipient is to blame."""


class SenderRefused(DeliveryError):
    """A 5xx at MAIL FROM, at DATA or after the data: the relay refuses the sender or the
    message (policy, content, reputation). No recipient is to blame, so nobody bounces;
    the send stops and the rows stay queued."""


class DeliveryUnknown(DeliveryError):
    """The connection was lost after the whole message was written and before the reply:
    the relay may have accepted it. Resent once; the possible duplicate counts in the bound."""


# ----------------------------------------------------------------- transports


class Transport(Protocol):
    def send(self, sender: str, recipient: str, message: bytes, *, wire: bool = False) -> None:
        """Hand over one message; ``wire``: it is already a DATA payload (see :func:`wire_data`)."""
    
    def close(self) -> None: ...


TransportFactory = Callable[[], Transport]

_UNSAFE_ADDR = re.compile(r"[\x00-\x20<>\x7f]")


def envelope_address(address: str, smtputf8: bool) -> str:
    """The address as the envelope can carry it: as is with SMTPUTF8 (RFC 6531),
    else with an IDNA (A-label) domain; a non-ASCII local part needs SMTPUTF8."""
    if address.isascii() or smtputf8:
        return address
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        raise DeliveryError(f"{address}: the relay does not offer SMTPUTF8, which this local part needs", permanent=True)
    return f"{local}@{idna_domain(domain)}"


class SmtpTransport:
    """One SMTP connection, opened lazily and reused for every message."""

    def __init__(self, cfg: SmtpConfig, password: str | None, signer: Signer | None = None) -> None:
        self.cfg = cfg
        self.password = password
        self.signer = signer
        self._conn: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        cfg = self.cfg
        conn: smtplib.SMTP | None = None
        try:
            if cfg.security == "tls":
                conn = smtplib.SMTP_SSL(
                    cfg.host, cfg.port, timeout=cfg.timeout, context=ssl.create_default_context()
                )
            else:
                conn = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
            conn.ehlo()
            if cfg.security == "starttls":
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
            if cfg.username:
                conn.login(cfg.username, self.password or "")
        except (OSError, smtplib.SMTPException) as exc:
            if conn is not None:
                _quietly_close(conn)
            code = getattr(exc, "smtp_code", None)
            raise TransportUnavailable(
                f"SMTP {cfg.host}:{cfg.port}: {exc}", code=code if isinstance(code, int) else None
            ) from exc
        return conn

    def send(self, sender: str, recipient: str, message: bytes, *, wire: bool = False) -> None:
        payload = message if wire else wire_data(message)
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self._connect()
            stage = _Stage()
            try:
                self._transaction(self._conn, sender, recipient, payload, message, stage)
                return
            except (smtplib.SMTPServerDisconnected, OSError) as exc:
                self.close()
                if stage.data_sent:
                    # The final dot went out: the relay may have kept the message.
                    raise DeliveryUnknown(f"connection lost after the data, before the reply: {exc}") from exc
                # An idle connection the server closed, or a drop before the
                # message was complete (which no server can have accepted):
                # one immediate retry on a fresh connection, then it is an
                # ordinary temporary failure with backoff.
                if attempt == 2:
                    raise DeliveryError(f"connection lost: {exc}") from exc
                log.info("SMTP connection lost (%s); reconnecting", exc)
        raise AssertionError("unreachable")

    def _transaction(
        self, conn: smtplib.SMTP, sender: str, recipient: str, payload: bytes, message: bytes, stage: _Stage
    ) -> None:
        # Commands are written directly rather than through smtplib's
        # mail()/rcpt(): those re-parse both addresses with email.utils on
        # every message, which cost more than the rest of the transaction.
        # The addresses were validated when stored; this guards the syntax.
        for address in (sender, recipient):
            if _UNSAFE_ADDR.search(address):
                raise DeliveryError(f"refusing envelope address {address!r}", permanent=True)
        smtputf8 = conn.has_extn("smtputf8")
        sender, recipient = envelope_address(sender, smtputf8), envelope_address(recipient, smtputf8)
        options = ""
        if not payload.isascii():
            if conn.has_extn("8bitmime"):
                options += " BODY=8BITMIME"
            else:
                # RFC 6152: no 8bit data to a server that did not offer it. The
                # slow path (parse, re-encode, re-sign) only runs for such relays.
                payload = wire_data(self.seven_bit(unwire(payload)))
        if not (sender.isascii() and recipient.isascii()):
            options += " SMTPUTF8"
        mail = f"MAIL FROM:<{sender}>{options}\r\n".encode("utf-8")
        rcpt = f"RCPT TO:<{recipient}>\r\n".encode("utf-8")
        if conn.has_extn("pipelining"):
            # RFC 2920: one write and one round trip for the envelope.
            conn.send(mail + rcpt + b"DATA\r\n")
            replies = [conn.getreply(), conn.getreply(), conn.getreply()]
        else:
            replies = []
            steps: tuple[tuple[bytes, tuple[int, ...]], ...] = (
                (mail, (250,)), (rcpt, (250, 251)), (b"DATA\r\n", (354,))
            )
            for command, ok in steps:
                conn.send(command)
                replies.append(conn.getreply())
                if replies[-1][0] not in ok:
                    break
        for (code, resp), ok, what in zip(
            replies, ((250,), (250, 251), (354,)), ("MAIL FROM", "RCPT TO", "DATA")
        ):
            if code not in ok:
                if len(replies) == 3 and replies[2][0] == 354:
                    # A pipelined DATA was accepted after a refused envelope:
                    # end it empty, which the server rejects for want of recipients.
                    conn.send(b".\r\n")
                    conn.getreply()
                self._reset(conn, code)
                raise _classified(what, f"{what} refused: {code} {_text(resp)}", code)
        conn.send(payload)
        stage.data_sent = True
        code, resp = conn.getreply()
        if code == -1:  # smtplib's "connection closed" reply
            raise smtplib.SMTPServerDisconnected("no reply to the data")
        if code != 250:
            self._reset(conn, code)
            raise _classified("end of data", f"message refused: {code} {_text(resp)}", code)

    def seven_bit(self, message: bytes) -> bytes:
        converted = to_seven_bit(message)
        return self.signer.resign(converted) if self.signer is not None else converted

    def _reset(self, conn: smtplib.SMTP, code: int) -> None:
        if code == 421:  # the server is closing the channel
            self.close()
            return
        try:
            conn.rset()
        except (smtplib.SMTPException, OSError):
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                _quietly_close(conn)


def _quietly_close(conn: smtplib.SMTP) -> None:
    try:
        conn.close()
    except OSError as exc:  # closing a dead socket: nothing left to do
        log.debug("close failed: %s", exc)


def _text(resp: bytes | str) -> str:
    return resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)


def _classified(stage: str, message: str, code: int) -> DeliveryError:
    """A refusal by the stage it came at: only RCPT TO blames the recipient."""
    if 500 <= code < 600:
        if stage == "RCPT TO":
            return DeliveryError(message, permanent=True, code=code)
        return SenderRefused(message, permanent=False, code=code)
    # 4xx (and anything unexpected) at any stage: a retry with backoff.
    return DeliveryError(message, permanent=False, code=code)


@dataclass
class _Stage:
    data_sent: bool = False


class MaildirTransport:
    """The outbox: each message a file in a real Maildir (``state/outbox``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            # The state folder exists already with a SQLite store, not with a PostgreSQL one.
            path.parent.mkdir(parents=True, exist_ok=True)
            self.box = mailbox.Maildir(str(path), create=True)
        except OSError as exc:
            raise TransportUnavailable(f"maildir {path}: {exc}") from exc

    def send(self, sender: str, recipient: str, message: bytes, *, wire: bool = False) -> None:
        if wire:
            raise ValueError("the Maildir transport takes messages, not SMTP DATA payloads")
        # What a local MDA adds, so the envelope survives in the file.
        head = f"Return-Path: <{sender}>\nDelivered-To: {recipient}\n".encode("utf-8")
        try:
            self.box.add(head + message.replace(b"\r\n", b"\n"))
        except (OSError, mailbox.Error) as exc:
            raise TransportUnavailable(f"maildir {self.path}: {exc}") from exc

    def close(self) -> None:
        return None


def outbox_path(cfg: Config) -> Path:
    return cfg.paths.state / OUTBOX


def transport_factory(cfg: Config) -> TransportFactory:
    """SMTP when ``smtp.host`` is set, else the Maildir outbox."""
    if cfg.smtp.host:
        password = cfg.smtp_password
        signer = signer_for(cfg)
        return lambda: SmtpTransport(cfg.smtp, password, signer)
    path = outbox_path(cfg)
    return lambda: MaildirTransport(path)


def connections(cfg: Config) -> int:
    # Maildir writes are local and fast; parallel writers only contend.
    return max(1, cfg.smtp.connections) if cfg.smtp.host else 1

