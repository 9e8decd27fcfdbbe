"""SMTP with STARTTLS, implicit TLS and login, against aiosmtpd with a throwaway certificate."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


from tests.support.smtp import Sink, add_issue, add_subscribers, free_port, issue_state, make_cfg, make_store
from publisher.delivery import send as delivery
from publisher.delivery import sender as delivery_sender
from publisher.store import deliveries as ledger

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True,
    )
    return cert, key


class Users:
    def __init__(self) -> None:
        self.logins: list[str] = []

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and auth_data.login == b"publisher" and auth_data.password == PASSWORD.encode():
            self.logins.append(mechanism)
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


class TlsController(Controller):
    """aiosmtpd wrapped in TLS from the first byte (``security = "tls"``)."""

    def __init__(self, *args: Any, ssl_context: ssl.SSLContext, **kw: Any) -> None:
        super().__init__(*args, ssl_context=ssl_context, **kw)

    def _trigger_server(self) -> None:  # the readiness probe must speak TLS too
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        import socket

        with socket.create_connection((self.hostname, self.port), timeout=5) as raw, ctx.wrap_socket(raw) as s:
            s.recv(1024)


@pytest.fixture
def trust(certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """Make the throwaway certificate trusted the way an operator would: SSL_CERT_FILE."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    monkeypatch.setenv("PUBLISHER_SMTP_PASSWORD", PASSWORD)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(certificate[0]), str(certificate[1]))
    return server_ctx


@pytest.fixture
def starttls_server(trust: ssl.SSLContext) -> Iterator[tuple[int, Sink, Users]]:
    sink, users = Sink(), Users()
    port = free_port()
    controller = Controller(
        sink, hostname="localhost", port=port, tls_context=trust, require_starttls=True,
        authenticator=users, auth_required=True, auth_require_tls=True,
    )
    controller.start()
    try:
        yield port, sink, users
    finally:
        controller.stop()


def test_starttls_and_login(tmp_path: Path, starttls_server: tuple[int, Sink, Users]) -> None:
    port, sink, users = starttls_server
    cfg = make_cfg(tmp_path, port=port, host="localhost", security="starttls", username="publisher")
    engine = make_store(cfg)
    emails = add_subscribers(engine, 5)
    issue_id = add_issue(engine)
    report = delivery.send_issue(cfg, engine, issue_id)
    assert report.sent == 5 and sorted(sink.recipients()) == emails
    assert users.logins and len(users.logins) <= cfg.smtp.connections  # one login per reused connection
    assert issue_state(engine, issue_id) == "sent"


def test_wrong_password_aborts_without_spending_attempts(
    tmp_path: Path, starttls_server: tuple[int, Sink, Users], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, sink, _ = starttls_server
    monkeypatch.setenv("PUBLISHER_SMTP_PASSWORD", "wrong")
    cfg = make_cfg(tmp_path, port=port, host="localhost", security="starttls", username="publisher")
    engine = make_store(cfg)
    add_subscribers(engine, 4)
    issue_id = add_issue(engine)
    with pytest.raises(delivery_sender.SendAborted, match="535"):
        delivery.send_issue(cfg, engine, issue_id)
    assert sink.messages == []
    assert ledger.progress(engine, issue_id) == ledger.Progress(queued=4)


def test_implicit_tls(tmp_path: Path, trust: ssl.SSLContext) -> None:
    sink = Sink()
    port = free_port()
    controller = TlsController(sink, hostname="localhost", port=port, ssl_context=trust)
    controller.start()
    try:
        cfg = make_cfg(tmp_path, port=port, host="localhost", security="tls")
        engine = make_store(cfg)
        emails = add_subscribers(engine, 3)
        issue_id = add_issue(engine)
        assert delivery.send_issue(cfg, engine, issue_id).sent == 3
    finally:
        controller.stop()
    assert sorted(sink.recipients()) == emails
