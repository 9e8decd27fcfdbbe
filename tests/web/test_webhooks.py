"""Provider webhooks with valid and forged signatures: SES (SNS), Postmark, Mailgun, SendGrid.

SNS verification runs for real: a CA made here signs the SNS certificate and
the HTTPS server that hands it out; ``webhooks.ses_trust`` points at that CA.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from starlette.testclient import TestClient

from publisher.core.config import Config
from publisher.publish.pipeline import Pipeline
from publisher.store import bounces as bounces_store
from publisher.store import subscribers as subscribers_store
from publisher.web import app as web_app

from tests.support.project import build_config
from tests.support.smtp import add_issue, add_subscribers, make_store

NOW = dt.datetime.now(dt.timezone.utc)


def _now() -> dt.datetime:
    # Signed timestamps are checked against webhooks.max_age (600 s): they must be taken when the
    # test runs, not when the module was collected (a loaded full run reaches this file 10+ minutes in).
    return dt.datetime.now(dt.timezone.utc)
TOPIC = "arn:aws:sns:eu-west-1:123456789012:publisher-bounces"


def _cert(subject: str, key: rsa.RSAPrivateKey, issuer: tuple[x509.Name, rsa.RSAPrivateKey] | None, *,
          ca: bool = False, san: str | None = None) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer if issuer else (name, key)
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


class Pki:
    def __init__(self, tmp: Path) -> None:
        self.ca_key = _key()
        self.ca = _cert("Test Root CA", self.ca_key, None, ca=True)
        self.sns_key = _key()
        self.sns = _cert("sns.amazonaws.com", self.sns_key, (self.ca.subject, self.ca_key))
        rogue_key = _key()
        self.rogue_key = _key()
        rogue_ca = _cert("Rogue CA", rogue_key, None, ca=True)
        self.rogue = _cert("sns.amazonaws.com", self.rogue_key, (rogue_ca.subject, rogue_key))
        self.server_key = _key()
        self.server = _cert("localhost", self.server_key, (self.ca.subject, self.ca_key), san="localhost")
        # A certificate "issued" by a leaf (the HTTPS server's) that itself chains to the CA.
        self.by_leaf_key = _key()
        self.by_leaf = _cert("sns.amazonaws.com", self.by_leaf_key, (self.server.subject, self.server_key))
        self.trust = tmp / "trust.pem"
        self.trust.write_bytes(_pem(self.ca))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def cert_server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    """An HTTPS server (certificate from the test CA) handing out SNS certificates, recording visits."""
    folder = tmp_path_factory.mktemp("https")
    (folder / "key.pem").write_bytes(pki.server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (folder / "cert.pem").write_bytes(_pem(pki.server))
    files = {"/sns.pem": _pem(pki.sns), "/rogue.pem": _pem(pki.rogue), "/by-leaf.pem": _pem(pki.by_leaf, pki.server)}
    visits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            visits.append(self.path)
            body = files.get(self.path, b"confirmed")
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://localhost:{server.server_address[1]}", visits
    finally:
        server.shutdown()
        server.server_close()


SECRETS = {"PM_TOKEN": "pm-secret-token", "MG_KEY": "key-mailgun-signing", "SG_KEY": ""}
SG_PRIVATE = ec.generate_private_key(ec.SECP256R1())


def _config(tmp: Path, pki: Pki) -> Config:
    return build_config(
        tmp, create=True, site={"base_url": "https://news.example/"},
        webhooks={
            "ses_topic_arn": TOPIC, "ses_trust": str(pki.trust), "ses_cert_hosts": "localhost",
            "postmark_token_env": "PM_TOKEN", "mailgun_key_env": "MG_KEY", "sendgrid_key_env": "SG_KEY",
        },
    )


@pytest.fixture()
def client(tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, Any, list[str]]]:
    sg_public = SG_PRIVATE.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    for name, value in {**SECRETS, "SG_KEY": base64.b64encode(sg_public).decode()}.items():
        monkeypatch.setenv(name, value)
    cfg = _config(tmp_path, pki)
    engine = make_store(cfg)
    emails = add_subscribers(engine, 6)
    assert add_issue(engine) == 1  # the issue SES names through X-Publisher-Issue
    # The providers post to the public address, the one Host the app answers to.
    with TestClient(web_app.create_app(cfg, engine, Pipeline(cfg, engine)), base_url=cfg.site.base_url) as c:
        yield c, engine, emails


def _status(engine: Any, address: str) -> str:
    sub = subscribers_store.find_subscriber(engine, address)
    assert sub is not None
    return sub.status


def _sns(base: str, key: rsa.RSAPrivateKey, cert_path: str, message: dict[str, Any], *, kind: str = "Notification",
         topic: str = TOPIC, version: str = "1") -> dict[str, str]:
    msg = {
        "Type": kind, "MessageId": f"mid-{hash(json.dumps(message)) & 0xffff}", "TopicArn": topic,
        "Message": json.dumps(message), "Timestamp": _now().isoformat(), "SignatureVersion": version,
        "SigningCertURL": base + cert_path,
    }
    if kind == "SubscriptionConfirmation":
        msg.update(Token="tok", SubscribeURL=base + "/confirm-subscription")
    fields = ("Message", "MessageId", "Subject", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
    canonical = "".join(f"{k}\n{msg[k]}\n" for k in fields if k in msg).encode()
    algorithm: hashes.HashAlgorithm = hashes.SHA256() if version == "2" else hashes.SHA1()
    msg["Signature"] = base64.b64encode(key.sign(canonical, padding.PKCS1v15(), algorithm)).decode()
    return msg


def test_ses_bounce_and_complaint_with_a_verified_signature(client: Any, pki: Pki, cert_server: Any) -> None:
    c, engine, emails = client
    base, visits = cert_server
    bounce = {"notificationType": "Bounce", "bounce": {"bounceType": "Permanent", "bounceSubType": "General",
              "bouncedRecipients": [{"emailAddress": emails[0]}]},
              "mail": {"headers": [{"name": "X-Publisher-Issue", "value": "story/harbour-strike"}]}}
    r = c.post("/webhooks/ses", content=json.dumps(_sns(base, pki.sns_key, "/sns.pem", bounce)))
    assert r.status_code == 200, r.text
    assert _status(engine, emails[0]) == "bounced"
    complaint = {"notificationType": "Complaint", "complaint": {"complainedRecipients": [{"emailAddress": emails[1]}]}}
    r = c.post("/webhooks/ses", content=json.dumps(_sns(base, pki.sns_key, "/sns.pem", complaint, version="2")))
    assert r.status_code == 200 and _status(engine, emails[1]) == "unsubscribed"
    counts = bounces_store.issue_counts(engine, [1])[1]
    assert counts.bounces == 1 and counts.complaints == 0  # the complaint named no issue
    # A subscription confirmation is verified, then SubscribeURL is visited.
    r = c.post("/webhooks/ses", content=json.dumps(_sns(base, pki.sns_key, "/sns.pem", {}, kind="SubscriptionConfirmation")))
    assert r.status_code == 200 and "/confirm-subscription" in visits


def test_ses_refuses_forgeries(client: Any, pki: Pki, cert_server: Any) -> None:
    c, engine, emails = client
    base, _ = cert_server
    bounce = {"notificationType": "Bounce", "bounce": {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": emails[2]}]}}
    forged = [
        _sns(base, pki.rogue_key, "/sns.pem", bounce),  # signed by another key
        _sns(base, pki.rogue_key, "/rogue.pem", bounce),  # a certificate from an untrusted CA
        _sns(base, pki.by_leaf_key, "/by-leaf.pem", bounce),  # issued by a non-CA certificate
        _sns(base, pki.sns_key, "/sns.pem", bounce, topic="arn:aws:sns:eu-west-1:999:other"),  # not our topic
        {**_sns(base, pki.sns_key, "/sns.pem", bounce), "SigningCertURL": "https://evil.example/sns.pem"},
        {**_sns(base, pki.sns_key, "/sns.pem", bounce), "SigningCertURL": base.replace("https", "http") + "/sns.pem"},
    ]
    tampered = _sns(base, pki.sns_key, "/sns.pem", bounce)
    tampered["Message"] = tampered["Message"].replace(emails[2], emails[3])
    for msg in [*forged, tampered]:
        assert c.post("/webhooks/ses", content=json.dumps(msg)).status_code == 403
    assert _status(engine, emails[2]) == "active" and _status(engine, emails[3]) == "active"


def test_postmark_token_or_basic_auth(client: Any) -> None:
    c, engine, emails = client
    body = json.dumps({"RecordType": "Bounce", "Type": "HardBounce", "Email": emails[0], "ID": 42})
    assert c.post("/webhooks/postmark", content=body, headers={"X-Postmark-Token": "wrong"}).status_code == 403
    assert c.post("/webhooks/postmark", content=body, auth=("postmark", "wrong")).status_code == 403
    assert c.post("/webhooks/postmark", content=body).status_code == 403
    assert _status(engine, emails[0]) == "active"
    assert c.post("/webhooks/postmark", content=body, auth=("postmark", SECRETS["PM_TOKEN"])).status_code == 200
    assert _status(engine, emails[0]) == "bounced"
    spam = json.dumps({"RecordType": "SpamComplaint", "Email": emails[1], "ID": 43})
    assert c.post("/webhooks/postmark", content=spam, headers={"X-Postmark-Token": SECRETS["PM_TOKEN"]}).status_code == 200
    assert _status(engine, emails[1]) == "unsubscribed"


def _mailgun(event: dict[str, Any], *, key: str = SECRETS["MG_KEY"], timestamp: float | None = None) -> str:
    ts = str(int(timestamp if timestamp is not None else _now().timestamp()))
    token = "a" * 50
    sig = hmac.new(key.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": ts, "token": token, "signature": sig}, "event-data": event})


def test_mailgun_hmac(client: Any) -> None:
    c, engine, emails = client
    failed = {"event": "failed", "severity": "permanent", "recipient": emails[0], "id": "ev1"}
    assert c.post("/webhooks/mailgun", content=_mailgun(failed, key="not-the-key")).status_code == 403
    stale = _mailgun(failed, timestamp=_now().timestamp() - 3600)
    assert c.post("/webhooks/mailgun", content=stale).status_code == 403
    assert _status(engine, emails[0]) == "active"
    assert c.post("/webhooks/mailgun", content=_mailgun(failed)).status_code == 200
    assert _status(engine, emails[0]) == "bounced"
    complained = {"event": "complained", "recipient": emails[1], "id": "ev2"}
    assert c.post("/webhooks/mailgun", content=_mailgun(complained)).status_code == 200
    assert _status(engine, emails[1]) == "unsubscribed"


def test_sendgrid_ecdsa(client: Any) -> None:
    c, engine, emails = client
    body = json.dumps([
        {"email": emails[0], "event": "bounce", "type": "bounce", "sg_event_id": "sg1", "reason": "550 5.1.1"},
        {"email": emails[1], "event": "spamreport", "sg_event_id": "sg2"},
        {"email": emails[2], "event": "delivered", "sg_event_id": "sg3"},
    ]).encode()
    ts = str(int(_now().timestamp()))

    def signed(key: ec.EllipticCurvePrivateKey, payload: bytes) -> dict[str, str]:
        sig = key.sign(ts.encode() + payload, ec.ECDSA(hashes.SHA256()))
        return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(sig).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": ts}

    other = ec.generate_private_key(ec.SECP256R1())
    assert c.post("/webhooks/sendgrid", content=body, headers=signed(other, body)).status_code == 403
    assert c.post("/webhooks/sendgrid", content=body.replace(b"sg1", b"sg9"), headers=signed(SG_PRIVATE, body)).status_code == 403
    assert c.post("/webhooks/sendgrid", content=body).status_code == 403
    assert [_status(engine, e) for e in emails[:3]] == ["active"] * 3
    assert c.post("/webhooks/sendgrid", content=body, headers=signed(SG_PRIVATE, body)).status_code == 200
    assert [_status(engine, e) for e in emails[:3]] == ["bounced", "unsubscribed", "active"]
    # The same events again (a provider retry) change nothing and are not counted twice.
    assert c.post("/webhooks/sendgrid", content=body, headers=signed(SG_PRIVATE, body)).status_code == 200
    assert len(bounces_store.events_for(engine, emails[0])) == 1


def test_endpoints_are_off_until_configured(tmp_path: Path) -> None:
    cfg = build_config(tmp_path, create=True)
    engine = make_store(cfg)
    with TestClient(web_app.create_app(cfg, engine, Pipeline(cfg, engine)), base_url=cfg.site.base_url) as c:
        for provider in ("ses", "postmark", "mailgun", "sendgrid"):
            assert c.post(f"/webhooks/{provider}", content=b"{}").status_code == 404


def test_the_desk_line_shows_an_issue_s_bounces_and_complaints(tmp_path: Path) -> None:
    from publisher.core.clock import system_clock
    from publisher.web.deskdata import Desk
    from tests.support.desk import add_story, make_config

    cfg = make_config(tmp_path)
    engine = make_store(cfg)
    add_story(engine, "alpha")
    desk = Desk(cfg, engine, Pipeline(cfg, engine), system_clock)
    (row,) = desk.stories()
    assert row.issue_id is not None and (row.bounces, row.complaints) == (0, 0)
    emails = add_subscribers(engine, 3)
    for email, kind in zip(emails, (bounces_store.BounceKind.HARD, bounces_store.BounceKind.SOFT, bounces_store.BounceKind.COMPLAINT)):
        event = bounces_store.Event(email, kind, "postmark", "", f"ev-{email}", row.issue_id)
        bounces_store.apply_event(engine, event, bounce_after=1, soft_after=5, now=NOW)
    (row,) = desk.stories()
    assert (row.bounces, row.complaints) == (2, 1)
