"""SMTP transactions as the transport writes them: PIPELINING (RFC 2920) when offered, one
write per message, and every stage's answer kept per message, against aiosmtpd and Postfix's smtp-sink."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from publisher.core.errors import DeliveryError
from publisher.mail.transports import DeliveryUnknown, SenderRefused, SmtpTransport
from publisher.mail.wire import wire_data

from tests.support.ports import free_port
from tests.support.smtp import Sink, make_cfg, smtp_server
from tests.support.waiting import wait_until

SENDER = "briefs@news.example.org"


class CountingSocket:
    """The connection's socket, counting the writes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(data)
        self.sock.sendall(data)


def _items(n: int, *, body: bytes = b"x") -> list[tuple[str, str, bytes]]:
    return [(SENDER, f"r{i}@example.net", wire_data(b"Subject: m%d\r\n\r\n.dot\r\n%s\r\n" % (i, body))) for i in range(n)]


def _counted(transport: SmtpTransport) -> CountingSocket:
    transport.send_all([])  # nothing to send: no connection yet
    session = transport._connect()
    transport._session = session
    counter = CountingSocket(session.sock)
    session.sock = counter  # type: ignore[assignment]
    return counter


@pytest.mark.parametrize("pipelining", [True, False])
def test_one_write_per_message_with_pipelining_and_lockstep_without(tmp_path: Path, pipelining: bool) -> None:
    sink = Sink(pipelining=pipelining)
    with smtp_server(sink) as port:
        transport = SmtpTransport(make_cfg(tmp_path, port=port).smtp, None)
        counter = _counted(transport)
        assert transport._session is not None and transport._session.pipelining is pipelining
        assert transport.send_all(_items(5)) == [None] * 5
        transport.close()
    assert [m.rcpt_tos for m in sink.messages] == [[f"r{i}@example.net"] for i in range(5)]
    assert all(m.content.endswith(b"\r\n.dot\r\nx\r\n") for m in sink.messages)  # the server undid the stuffing
    if pipelining:
        # The first envelope alone, then each message's data with the next envelope behind it.
        assert len(counter.writes) == 6
        assert counter.writes[0] == b"MAIL FROM:<briefs@news.example.org>\r\nRCPT TO:<r0@example.net>\r\nDATA\r\n"
        assert counter.writes[1].endswith(b"\r\n.\r\nMAIL FROM:<briefs@news.example.org>\r\nRCPT TO:<r1@example.net>\r\nDATA\r\n")
        assert counter.writes[5].endswith(b"\r\nx\r\n.\r\n")
    else:
        assert len(counter.writes) == 5 * 4  # MAIL, RCPT, DATA, the data


def test_pipelined_answers_stay_per_message(tmp_path: Path) -> None:
    """A bounce, a temporary refusal at RCPT and a 4xx after the data, each in the middle of a
    pipelined run: only that message is affected and the next one goes out on the same connection."""
    sink = Sink(pipelining=True, permanent={"r1@example.net"}, temp_fail={"r3@example.net": 1},
                data_replies=["250 ok", "250 ok", "451 4.3.0 try later"])
    with smtp_server(sink) as port:
        transport = SmtpTransport(make_cfg(tmp_path, port=port).smtp, None)
        results = transport.send_all(_items(7))
        transport.close()
    kinds = ["sent" if r is None else f"{'permanent' if r.permanent else 'temporary'} {r.code}" for r in results]
    # r1 bounces at RCPT, r3 is greylisted, and the third DATA (r4's) gets a 4xx after the data.
    assert kinds == ["sent", "permanent 550", "sent", "temporary 451", "temporary 451", "sent", "sent"]
    # (The sink keeps only messages it answers itself, after its scripted replies run out.)
    assert [m.rcpt_tos[0] for m in sink.messages] == ["r5@example.net", "r6@example.net"]


def test_a_5xx_after_the_data_stops_with_the_next_envelope_unsent(tmp_path: Path) -> None:
    sink = Sink(pipelining=True, data_replies=["250 ok", "552 5.3.4 policy"])
    with smtp_server(sink) as port:
        transport = SmtpTransport(make_cfg(tmp_path, port=port).smtp, None)
        results = transport.send_all(_items(4))
        assert transport._session is None  # hung up: the pipelined envelope cannot be taken back
        # The next send starts cleanly on a new connection.
        assert transport.send_all(_items(1)) == [None]
        transport.close()
    assert results[0] is None and isinstance(results[1], SenderRefused) and len(results) == 2
    # r0 and r1 reached the end of their data (the sink keeps neither: scripted replies), r2 never
    # did; the one kept is the next send's.
    assert sink.data_count == 3 and [m.rcpt_tos[0] for m in sink.messages] == ["r0@example.net"]


def test_a_refused_sender_stops_at_once(tmp_path: Path) -> None:
    sink = Sink(pipelining=True, mail_from_replies=["550 5.7.1 sender rejected"])
    with smtp_server(sink) as port:
        transport = SmtpTransport(make_cfg(tmp_path, port=port).smtp, None)
        results = transport.send_all(_items(3))
        transport.close()
    assert len(results) == 1 and isinstance(results[0], SenderRefused) and "MAIL FROM refused: 550" in str(results[0])
    assert sink.messages == []


def test_a_drop_after_the_data_is_unknown_and_the_rest_go_on_a_new_connection(tmp_path: Path) -> None:
    sink = Sink(pipelining=True, keep_then_drop={2})
    with smtp_server(sink) as port:
        transport = SmtpTransport(make_cfg(tmp_path, port=port).smtp, None)
        results = transport.send_all(_items(4))
        transport.close()
    assert results[0] is None and isinstance(results[1], DeliveryUnknown) and results[2:] == [None, None]
    assert [m.rcpt_tos[0] for m in sink.messages] == [f"r{i}@example.net" for i in range(4)]


# ------------------------------------------------------------ Postfix smtp-sink

SMTP_SINK = shutil.which("smtp-sink") or ("/usr/sbin/smtp-sink" if Path("/usr/sbin/smtp-sink").exists() else None)
needs_smtp_sink = pytest.mark.skipif(SMTP_SINK is None, reason="Postfix's smtp-sink is not installed (apt-get install postfix)")


@contextmanager
def postfix_sink(*options: str) -> Iterator[int]:
    assert SMTP_SINK is not None
    port = free_port()
    user = ["-u", "nobody"] if hasattr(__import__("os"), "geteuid") and __import__("os").geteuid() == 0 else []
    proc = subprocess.Popen([SMTP_SINK, *user, *options, f"127.0.0.1:{port}", "64"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    try:
        wait_until(listening, timeout=10)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@needs_smtp_sink
def test_smtp_sink_pipelined(tmp_path: Path) -> None:
    with postfix_sink() as port:
        transport = SmtpTransport(make_cfg(tmp_path, port=port).smtp, None)
        counter = _counted(transport)
        assert transport._session is not None and transport._session.pipelining
        assert transport.send_all(_items(50, body="é".encode() * 4000)) == [None] * 50
        transport.close()
    assert len(counter.writes) == 51


@needs_smtp_sink
def test_smtp_sink_without_pipelining_bounces_each_refused_recipient(tmp_path: Path) -> None:
    with postfix_sink("-f", "rcpt") as port:  # -f implies no PIPELINING
        transport = SmtpTransport(make_cfg(tmp_path, port=port).smtp, None)
        results = transport.send_all(_items(3))
        assert transport._session is not None and not transport._session.pipelining
        transport.close()
    assert all(isinstance(r, DeliveryError) and r.permanent and not isinstance(r, SenderRefused) for r in results)


@needs_smtp_sink
def test_smtp_sink_hanging_up_after_the_data_is_unknown(tmp_path: Path) -> None:
    with postfix_sink("-q", ".") as port:
        transport = SmtpTransport(make_cfg(tmp_path, port=port).smtp, None)
        results = transport.send_all(_items(3))
        transport.close()
    assert len(results) == 3 and all(isinstance(r, DeliveryUnknown) for r in results)


@needs_smtp_sink
def test_smtp_sink_421_at_rcpt_is_a_retry_on_a_new_connection(tmp_path: Path) -> None:
    with postfix_sink("-Q", "rcpt") as port:
        transport = SmtpTransport(make_cfg(tmp_path, port=port).smtp, None)
        results = transport.send_all(_items(3))
        transport.close()
    assert len(results) == 3
    assert all(isinstance(r, DeliveryError) and not r.permanent and r.code == 421 for r in results)
