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
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

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


Envelope = tuple[str, str, bytes]  # (sender, recipient, DATA payload)


@dataclass
class _Session:
    """A connection after the handshake, with what the server offered."""

    conn: smtplib.SMTP
    sock: socket.socket
    file: BinaryIO
    pipelining: bool
    eightbit: bool
    smtputf8: bool


class _Lost(Exception):
    """The connection dropped; ``data_sent``: after the current message's final dot."""

    def __init__(self, cause: BaseException | str, *, data_sent: bool) -> None:
        super().__init__(str(cause))
        self.data_sent = data_sent


class SmtpTransport:
    """One SMTP connection, opened lazily and reused for every message.

    smtplib does the handshake (EHLO, STARTTLS, AUTH); the transactions are
    written here, as bytes: with PIPELINING (RFC 2920) the envelope and DATA
    go in one write, and in :meth:`send_all` each message's data carries
    the next message's envelope behind it (RFC 2920 allows the data to open
    a group), so a message costs one write and one read.
    """

    def __init__(self, cfg: SmtpConfig, password: str | None, signer: Signer | None = None) -> None:
        self.cfg = cfg
        self.password = password
        self.signer = signer
        self._conn: smtplib.SMTP | None = None
        self._session: _Session | None = None
        self._stop: Callable[[], bool] = _never

    def _connect(self) -> _Session:
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
            if conn.sock is None:
                raise smtplib.SMTPServerDisconnected("no connection after the handshake")
            file = conn.file if conn.file is not None else conn.sock.makefile("rb")
            conn.file = file
        except (OSError, smtplib.SMTPException) as exc:
            if conn is not None:
                _quietly_close(conn)
            code = getattr(exc, "smtp_code", None)
            raise TransportUnavailable(
                f"SMTP {cfg.host}:{cfg.port}: {exc}", code=code if isinstance(code, int) else None
            ) from exc
        self._conn = conn
        return _Session(conn, conn.sock, file, conn.has_extn("pipelining"), conn.has_extn("8bitmime"),
                        conn.has_extn("smtputf8"))

    def send(self, sender: str, recipient: str, message: bytes, *, wire: bool = False) -> None:
        (result,) = self.send_all([(sender, recipient, message if wire else wire_data(message))])
        if result is not None:
            raise result

    def send_all(self, items: Sequence[Envelope], *, stop: Callable[[], bool] | None = None) -> list[DeliveryError | None]:
        """Send DATA payloads in order; one result each: None when accepted, else the error.

        The list stops short after a :class:`SenderRefused` or a
        :class:`TransportUnavailable`, or once ``stop()`` is true between
        messages (the rest were not tried). A connection
        lost before a message's final dot is retried once on a fresh
        connection; lost after it, the message is :class:`DeliveryUnknown`.
        """
        results: list[DeliveryError | None] = []
        retried = -1
        self._stop = stop or _never
        while len(results) < len(items) and not self._stop():
            try:
                if self._session is None:
                    self._session = self._connect()
                if self._run(self._session, items, results):
                    return results
            except TransportUnavailable as exc:
                results.append(exc)
                return results
            except _Lost as lost:
                self.close()
                k = len(results)
                if lost.data_sent:
                    # The final dot went out: the relay may have kept the message.
                    results.append(DeliveryUnknown(f"connection lost after the data, before the reply: {lost}"))
                elif retried == k:
                    results.append(DeliveryError(f"connection lost: {lost}"))
                else:
                    # An idle connection the server closed, or a drop before the
                    # message was complete (which no server can have accepted):
                    # one immediate retry on a fresh connection.
                    retried = k
                    log.info("SMTP connection lost (%s); reconnecting", lost)
        return results

    def _run(self, s: _Session, items: Sequence[Envelope], results: list[DeliveryError | None]) -> bool:
        """Send from ``items[len(results)]`` on; True when the send must stop (a refusal)."""
        ahead: tuple[bytes, bytes] | None = None  # the current message's envelope, already written
        while len(results) < len(items):
            k = len(results)
            if ahead is None:
                if self._stop():
                    return True
                try:
                    envelope, payload = self._prepare(s, *items[k])
                except DeliveryError as exc:
                    results.append(exc)
                    continue
                error = self._envelope(s, envelope)
            else:
                (envelope, payload), ahead = ahead, None
                error = self._replies(s)
            if error is not None:
                results.append(error)
                if isinstance(error, SenderRefused):
                    return True
                if self._session is None:  # hung up (a 421): the caller reconnects
                    return False
                continue
            nxt = self._next(s, items, k + 1)
            _write(s, payload + nxt[0] + b"DATA\r\n" if nxt else payload, data_sent=False)
            code, text = _reply(s, data_sent=True)
            if code == -1:  # not a reply: as good as none
                raise _Lost("no reply to the data", data_sent=True)
            if code == 250:
                results.append(None)
                ahead = nxt
                continue
            error = _classified("end of data", f"message refused: {code} {_text(text)}", code)
            results.append(error)
            if nxt is not None and (code == 421 or isinstance(error, SenderRefused)):
                # The next envelope is on its way and cannot be taken back but by hanging up.
                self.close()
                return isinstance(error, SenderRefused)
            if nxt is None:
                self._reset(code)
            if isinstance(error, SenderRefused) or self._session is None:
                return isinstance(error, SenderRefused)
            ahead = nxt  # the transaction ended with a 4xx: the next MAIL FROM stands
        return False

    def _next(self, s: _Session, items: Sequence[Envelope], k: int) -> tuple[bytes, bytes] | None:
        """The envelope to pipeline behind the current data (None: none, or it is refused
        before a byte is written, which its own turn reports)."""
        if not s.pipelining or k >= len(items) or self._stop():
            return None
        try:
            return self._prepare(s, *items[k])
        except DeliveryError:
            return None

    def _prepare(self, s: _Session, sender: str, recipient: str, payload: bytes) -> tuple[bytes, bytes]:
        """(MAIL FROM and RCPT TO lines, DATA payload) for the server's extensions."""
        # The addresses were validated when stored; this guards the syntax
        # (smtplib's mail()/rcpt() would re-parse both on every message).
        for address in (sender, recipient):
            if _UNSAFE_ADDR.search(address):
                raise DeliveryError(f"refusing envelope address {address!r}", permanent=True)
        sender, recipient = envelope_address(sender, s.smtputf8), envelope_address(recipient, s.smtputf8)
        options = b""
        if not payload.isascii():
            if s.eightbit:
                options += b" BODY=8BITMIME"
            else:
                # RFC 6152: no 8bit data to a server that did not offer it. The
                # slow path (parse, re-encode, re-sign) only runs for such relays.
                payload = wire_data(self.seven_bit(unwire(payload)))
        if not (sender.isascii() and recipient.isascii()):
            options += b" SMTPUTF8"
        envelope = (b"MAIL FROM:<" + sender.encode("utf-8") + b">" + options + b"\r\nRCPT TO:<"
                    + recipient.encode("utf-8") + b">\r\n")
        return envelope, payload

    def _envelope(self, s: _Session, envelope: bytes) -> DeliveryError | None:
        """Write MAIL FROM, RCPT TO and DATA (one write with PIPELINING); the error, if refused."""
        if s.pipelining:
            _write(s, envelope + b"DATA\r\n", data_sent=False)
            return self._replies(s)
        mail, _, rcpt = envelope.partition(b"\r\n")
        for command, ok, what in ((mail + b"\r\n", (250,), "MAIL FROM"), (rcpt, (250, 251), "RCPT TO"),
                                  (b"DATA\r\n", (354,), "DATA")):
            _write(s, command, data_sent=False)
            code, text = _reply(s, data_sent=False)
            if code not in ok:
                self._reset(code)
                return _classified(what, f"{what} refused: {code} {_text(text)}", code)
        return None

    def _replies(self, s: _Session) -> DeliveryError | None:
        """The three replies to a pipelined envelope and DATA; the first refusal, if any."""
        replies: list[tuple[int, bytes]] = []
        for what in ("MAIL FROM", "RCPT TO", "DATA"):
            code, text = _reply(s, data_sent=False)
            if code == 421:  # the server is closing the channel: no more replies will come
                self.close()
                return _classified(what, f"{what} refused: {code} {_text(text)}", code)
            replies.append((code, text))
        for (code, text), ok, what in zip(replies, ((250,), (250, 251), (354,)), ("MAIL FROM", "RCPT TO", "DATA")):
            if code not in ok:
                if replies[2][0] == 354:
                    # A pipelined DATA was accepted after a refused envelope:
                    # end it empty, which the server rejects for want of recipients.
                    _write(s, b".\r\n", data_sent=False)
                    _reply(s, data_sent=False)
                self._reset(code)
                return _classified(what, f"{what} refused: {code} {_text(text)}", code)
        return None

    def seven_bit(self, message: bytes) -> bytes:
        converted = to_seven_bit(message)
        return self.signer.resign(converted) if self.signer is not None else converted

    def _reset(self, code: int) -> None:
        if code == 421:  # the server is closing the channel
            self.close()
            return
        if self._session is None:
            return
        try:
            _write(self._session, b"RSET\r\n", data_sent=False)
            _reply(self._session, data_sent=False)
        except _Lost:
            self.close()

    def close(self) -> None:
        self._session = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                _quietly_close(conn)


_MAXLINE = 8192  # as smtplib


def _never() -> bool:
    return False


def _write(s: _Session, data: bytes, *, data_sent: bool) -> None:
    try:
        s.sock.sendall(data)
    except OSError as exc:
        raise _Lost(exc, data_sent=data_sent) from exc


def _reply(s: _Session, *, data_sent: bool) -> tuple[int, bytes]:
    """One reply, as smtplib's ``getreply`` reads it (multi-line joined by LF)."""
    lines: list[bytes] = []
    while True:
        try:
            line = s.file.readline(_MAXLINE + 1)
        except OSError as exc:
            raise _Lost(exc, data_sent=data_sent) from exc
        if not line:
            raise _Lost("connection closed by the server", data_sent=data_sent)
        lines.append(line[4:].strip(b" \t\r\n"))
        if line[3:4] != b"-":
            break
    try:
        return int(line[:3]), b"\n".join(lines)
    except ValueError:
        return -1, b"\n".join(lines)


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

