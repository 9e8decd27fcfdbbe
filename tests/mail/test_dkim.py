"""DKIM round trips: sign with publisher, verify with dkimpy against the published public key."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from publisher.delivery import send as delivery
from publisher.mail.dkim import Signer, parse_key, signer_for
from publisher.mail.message import MessageTemplate, to_seven_bit
from publisher.mail.wire import wire_data

from tests.support.smtp import T0, Sink, add_issue, add_subscribers, make_cfg, make_store, smtp_server, synthetic_issue


def _pem(kind: str) -> bytes:
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa" else ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@pytest.fixture(scope="module", params=["rsa", "ed25519"])
def key_pem(request: pytest.FixtureRequest) -> bytes:
    return _pem(str(request.param))


def _dns(signer: Signer) -> Callable[..., bytes]:
    record = signer.dns_record().encode()

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{signer.selector}._domainkey.{signer.domain}.".encode()
        return record

    return dnsfunc


def _signed_headers(message: bytes) -> list[str]:
    head = message.split(b"\r\n\r\n", 1)[0].decode()
    value = re.search(r"DKIM-Signature:(.*?)(?=\r\n\S)", head, re.S)
    assert value
    h = re.search(r"h=([^;]+);", value.group(1).replace("\r\n\t", ""))
    assert h
    return h.group(1).split(":")


def _template(tmp: Path) -> MessageTemplate:
    cfg = make_cfg(tmp)
    return MessageTemplate.build(synthetic_issue(), cfg, sent_at=T0)


def test_round_trip_covers_both_list_unsubscribe_headers(tmp_path: Path, key_pem: bytes) -> None:
    signer = Signer("news.example.org", "s2026", parse_key(key_pem, "test"))
    raw = _template(tmp_path).personalize(
        to="reader@example.net", unsubscribe_url="https://news.example.org/unsubscribe?t=1~x", message_id="<1.1.a@news.example.org>"
    )
    signed = signer.sign(raw)
    assert dkim.verify(signed, dnsfunc=_dns(signer))
    names = _signed_headers(signed)
    assert {"list-unsubscribe", "list-unsubscribe-post", "from", "to", "subject", "date", "message-id", "list-id",
            "mime-version", "content-type"} <= set(names)
    assert f"a={signer.algorithm};" in signed.split(b"\r\n\r\n")[0].decode()
    # Any change to a signed header or the body breaks it.
    tampered = signed.replace(b"unsubscribe?t=1~x>", b"unsubscribe?t=2~x>", 1)
    assert tampered != signed and not dkim.verify(tampered, dnsfunc=_dns(signer))
    # The wire path (dot-stuffed DATA payload) signs the same message.
    wire = signer.sign_wire(wire_data(raw))
    assert wire.endswith(b"\r\n.\r\n")
    from publisher.mail.dkim import unwire

    assert dkim.verify(unwire(wire), dnsfunc=_dns(signer))
    # A relay without 8BITMIME gets a re-encoded message, signed again.
    seven = signer.resign(to_seven_bit(signed))
    assert seven.isascii() and seven.count(b"DKIM-Signature:") == 1 and dkim.verify(seven, dnsfunc=_dns(signer))


def test_signed_send_through_smtp_verifies_for_every_reader(tmp_path: Path, key_pem: bytes) -> None:
    (tmp_path / "dkim.pem").write_bytes(key_pem)
    for eightbit in (True, False):
        sink = Sink(eightbit=eightbit)
        with smtp_server(sink) as port:
            cfg = make_cfg(tmp_path / str(eightbit), port=port)
            cfg = dataclasses.replace(
                cfg, dkim=dataclasses.replace(cfg.dkim, domain="news.example.org", selector="s1", private_key=str(tmp_path / "dkim.pem"))
            )
            engine = make_store(cfg)
            add_subscribers(engine, 3)
            delivery.send_issue(cfg, engine, add_issue(engine))
        signer = signer_for(cfg)
        assert signer is not None and len(sink.messages) == 3
        for got in sink.messages:
            assert got.content.isascii() or eightbit
            assert dkim.verify(got.content, dnsfunc=_dns(signer))


def test_a_bad_key_names_the_setting(tmp_path: Path) -> None:
    from publisher.core.errors import ConfigError

    with pytest.raises(ConfigError, match="dkim.private_key"):
        parse_key(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n", "x.pem")


def test_doctor_prints_the_records(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from publisher.cli import main
    from tests.support.project import make_project

    (tmp_path / "k.pem").write_bytes(_pem("ed25519"))
    make_project(
        tmp_path, samples=False, site={"base_url": "http://news.example/"}, smtp={"host": "smtp.example.net"},
        email={"sender_address": "briefs@news.example"}, dkim={"domain": "news.example", "selector": "s1", "private_key": "k.pem"},
    )
    result = CliRunner().invoke(main, ["doctor", "--config", str(tmp_path / "config.toml")])
    assert result.exit_code == 1  # the http base_url warning
    assert "s1._domainkey.news.example  TXT  \"v=DKIM1; k=ed25519; p=" in result.output
    assert "_dmarc.news.example  TXT" in result.output and "v=spf1 a:smtp.example.net" in result.output
    assert "a test signature verifies" in result.output
    assert "warning: site.base_url" in result.output


def test_confirmation_mail_is_signed_too(tmp_path: Path) -> None:
    from publisher.mail.message import confirmation_message

    key = tmp_path / "k.pem"
    key.write_bytes(_pem("ed25519"))
    sink = Sink()
    with smtp_server(sink) as port:
        cfg = make_cfg(tmp_path, port=port)
        cfg = dataclasses.replace(cfg, dkim=dataclasses.replace(cfg.dkim, domain="news.example.org", selector="s1", private_key=str(key)))
        delivery.send_one(cfg, "müller@bücher.example", confirmation_message(cfg, "müller@bücher.example", "https://news.example.org/confirm?t=x", now=T0))
    signer = signer_for(cfg)
    assert signer is not None
    (got,) = sink.messages
    assert got.rcpt_tos == ["müller@bücher.example"]
    assert dkim.verify(got.content, dnsfunc=_dns(signer))
