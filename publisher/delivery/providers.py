"""Provider webhooks: verify each request, then turn its payload into bounce and complaint events.

Every endpoint is off until its secret is configured, and nothing is
believed before its signature checks out:

* SES through SNS: the RSA signature (SignatureVersion 1: SHA1, 2: SHA256)
  over SNS's canonical string, with a certificate fetched only from an
  https host in ``webhooks.ses_cert_hosts`` and chained to a trusted CA
  (``webhooks.ses_trust`` or the system store); the topic must be ours.
* Postmark: HTTP basic auth (any user, the token as password) or an
  ``X-Postmark-Token`` header, compared in constant time.
* Mailgun: HMAC-SHA256 of timestamp + token with the webhook signing key.
* SendGrid: its signed event webhook, ECDSA P-256/SHA-256 over timestamp + body.

Mailgun and SendGrid timestamps older than ``webhooks.max_age`` are refused (replays).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import hmac
import json
import ssl
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from ..core.config import Config
from ..core.errors import PublisherError
from ..store.bounces import BounceKind, Event


class WebhookRefused(PublisherError):
    """A webhook request that fails verification (bad or missing signature, stale, wrong topic)."""


class WebhookPayloadError(PublisherError):
    """A verified request whose body is not what the provider sends."""


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookPayloadError(f"not JSON: {exc}") from exc


def parse_json_object(body: bytes) -> dict[str, Any]:
    data = _json(body)
    if not isinstance(data, dict):
        raise WebhookPayloadError("payload is not a JSON object")
    return data


def _fresh(cfg: Config, timestamp: str, now: dt.datetime) -> None:
    try:
        at = float(timestamp)
    except ValueError as exc:
        raise WebhookRefused(f"timestamp {timestamp!r} is not a number") from exc
    if abs(now.timestamp() - at) > cfg.webhooks.max_age:
        raise WebhookRefused(f"timestamp {timestamp} is outside the {cfg.webhooks.max_age}s window")


# ------------------------------------------------------------------ SES / SNS

_SNS_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}


def _trust_context(cfg: Config) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=_trust_file(cfg) or None)


def _trust_file(cfg: Config) -> str:
    """``webhooks.ses_trust`` resolved against the config file's folder ('' for the system store)."""
    if not cfg.webhooks.ses_trust:
        return ""
    path = Path(cfg.webhooks.ses_trust).expanduser()
    return str(path if path.is_absolute() else Path(cfg.source).parent / path)


def _trusted_roots(cfg: Config) -> list[x509.Certificate]:
    if cfg.webhooks.ses_trust:
        try:
            with open(_trust_file(cfg), "rb") as fh:
                return x509.load_pem_x509_certificates(fh.read())
        except (OSError, ValueError) as exc:
            raise WebhookRefused(f"webhooks.ses_trust {_trust_file(cfg)}: {exc}") from exc
    context = ssl.create_default_context()
    return [x509.load_der_x509_certificate(der) for der in context.get_ca_certs(binary_form=True)]


@functools.lru_cache(maxsize=16)
def _fetch_certificate(url: str, trust: str) -> bytes:
    context = ssl.create_default_context(cafile=trust or None)
    with urllib.request.urlopen(url, timeout=10, context=context) as response:  # noqa: S310 (https checked)
        data: bytes = response.read(65536)
    return data


def _check_cert_url(cfg: Config, url: str) -> None:
    parts = urlsplit(url)
    hosts = [h.strip().lower() for h in cfg.webhooks.ses_cert_hosts.split(",") if h.strip()]
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not any(host == h.lstrip(".") or host.endswith(h if h.startswith(".") else "." + h) for h in hosts):
        raise WebhookRefused(f"SigningCertURL {url!r} is not https on a host in webhooks.ses_cert_hosts")


def _verify_chain(cfg: Config, chain: list[x509.Certificate], now: dt.datetime) -> x509.Certificate:
    """The leaf, once each certificate is in date and signed by the next, up to a trusted one."""
    roots = _trusted_roots(cfg)
    leaf = chain[0]
    pool = chain[1:] + roots
    cert = leaf
    for _ in range(8):
        if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
            raise WebhookRefused(f"certificate {cert.subject.rfc4514_string()} is not valid now")
        if cert in roots:
            return leaf
        issuer = next((c for c in pool if c.subject == cert.issuer and c != cert), None)
        if issuer is None:
            raise WebhookRefused(f"certificate {cert.subject.rfc4514_string()} does not chain to a trusted CA")
        try:
            cert.verify_directly_issued_by(issuer)
            is_ca = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound) as exc:
            raise WebhookRefused(f"certificate {cert.subject.rfc4514_string()}: bad issuer signature") from exc
        if not is_ca:  # a leaf certificate cannot vouch for another
            raise WebhookRefused(f"{issuer.subject.rfc4514_string()} is not a CA")
        cert = issuer
    raise WebhookRefused("certificate chain too long")


def verify_sns(cfg: Config, body: bytes, *, now: dt.datetime) -> dict[str, Any]:
    """The SNS message once its signature, certificate and topic check out."""
    if not cfg.webhooks.ses_topic_arn:
        raise WebhookRefused("webhooks.ses_topic_arn is not set")
    msg = _json(body)
    if not isinstance(msg, dict) or msg.get("Type") not in _SNS_FIELDS:
        raise WebhookPayloadError("not an SNS message")
    if msg.get("TopicArn") != cfg.webhooks.ses_topic_arn:
        raise WebhookRefused(f"topic {msg.get('TopicArn')!r} is not webhooks.ses_topic_arn")
    url = str(msg.get("SigningCertURL", ""))
    _check_cert_url(cfg, url)
    try:
        chain = x509.load_pem_x509_certificates(_fetch_certificate(url, _trust_file(cfg)))
    except (OSError, ValueError) as exc:
        raise WebhookRefused(f"SigningCertURL {url}: {exc}") from exc
    leaf = _verify_chain(cfg, chain, now)
    canonical = "".join(f"{k}\n{msg[k]}\n" for k in _SNS_FIELDS[msg["Type"]] if k in msg).encode("utf-8")
    algorithm: hashes.HashAlgorithm = hashes.SHA256() if str(msg.get("SignatureVersion")) == "2" else hashes.SHA1()
    key = leaf.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise WebhookRefused("SNS certificates carry RSA keys")
    try:
        key.verify(base64.b64decode(str(msg.get("Signature", ""))), canonical, padding.PKCS1v15(), algorithm)
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise WebhookRefused("SNS signature does not verify") from exc
    return msg


def confirm_subscription(cfg: Config, msg: Mapping[str, Any]) -> None:
    """Visit SubscribeURL (same host rules as the certificate) so SNS starts delivering."""
    url = str(msg.get("SubscribeURL", ""))
    _check_cert_url(cfg, url)
    with urllib.request.urlopen(url, timeout=10, context=_trust_context(cfg)) as response:  # noqa: S310
        response.read(65536)


def ses_events(notification: Mapping[str, Any]) -> list[Event]:
    """Bounce and Complaint notifications of SES (notificationType or eventType)."""
    data = _json(str(notification.get("Message", "")).encode("utf-8"))
    if not isinstance(data, dict):
        raise WebhookPayloadError("SES message is not an object")
    kind = data.get("notificationType") or data.get("eventType")
    ref = str(notification.get("MessageId", ""))
    if kind == "Bounce":
        b = data.get("bounce", {})
        bounce_kind = BounceKind.HARD if b.get("bounceType") == "Permanent" else BounceKind.SOFT
        detail = f"{b.get('bounceType')}/{b.get('bounceSubType')}"
        return [Event(str(r.get("emailAddress", "")), bounce_kind, "ses", detail, ref) for r in b.get("bouncedRecipients", [])]
    if kind == "Complaint":
        c = data.get("complaint", {})
        detail = str(c.get("complaintFeedbackType") or "complaint")
        return [Event(str(r.get("emailAddress", "")), BounceKind.COMPLAINT, "ses", detail, ref) for r in c.get("complainedRecipients", [])]
    return []


def ses_issue_ref(notification: Mapping[str, Any]) -> tuple[str, str] | None:
    """(kind, key) from the X-Publisher-Issue header SES echoes in ``mail.headers``."""
    try:
        data = json.loads(str(notification.get("Message", "")))
        headers = data.get("mail", {}).get("headers", [])
    except (ValueError, AttributeError):
        return None
    for h in headers if isinstance(headers, list) else []:
        if isinstance(h, dict) and str(h.get("name", "")).lower() == "x-publisher-issue":
            kind, _, key = str(h.get("value", "")).partition("/")
            return (kind, key) if kind and key else None
    return None


# ------------------------------------------------------------------ Postmark

_POSTMARK_HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated", "Unsubscribe", "Blocked"}
_POSTMARK_SOFT = {"SoftBounce", "Transient", "DnsError", "AutoResponder", "ChallengeVerification"}


def verify_postmark(cfg: Config, headers: Mapping[str, str]) -> None:
    env = cfg.webhooks.postmark_token_env
    token = cfg.secret(env) if env else None
    if not token:
        raise WebhookRefused("webhooks.postmark_token_env is not set")
    given = headers.get("x-postmark-token", "")
    auth = headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        try:
            given = base64.b64decode(auth[6:]).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise WebhookRefused("malformed basic auth") from exc
    if not given or not hmac.compare_digest(given.encode(), token.encode()):
        raise WebhookRefused("Postmark token does not match")


def postmark_events(body: bytes) -> list[Event]:
    data = _json(body)
    if not isinstance(data, dict):
        raise WebhookPayloadError("Postmark payload is not an object")
    record, address, ref = data.get("RecordType"), str(data.get("Email", "")), str(data.get("ID", ""))
    if record == "SpamComplaint":
        return [Event(address, BounceKind.COMPLAINT, "postmark", "SpamComplaint", ref)]
    if record == "Bounce":
        kind = data.get("Type", "")
        if kind in _POSTMARK_HARD:
            return [Event(address, BounceKind.HARD, "postmark", str(kind), ref)]
        if kind in _POSTMARK_SOFT:
            return [Event(address, BounceKind.SOFT, "postmark", str(kind), ref)]
    return []


# ------------------------------------------------------------------ Mailgun


def verify_mailgun(cfg: Config, data: Mapping[str, Any], *, now: dt.datetime) -> None:
    env = cfg.webhooks.mailgun_key_env
    key = cfg.secret(env) if env else None
    if not key:
        raise WebhookRefused("webhooks.mailgun_key_env is not set")
    sig = data.get("signature")
    if not isinstance(sig, dict):
        raise WebhookRefused("no Mailgun signature")
    timestamp, token, signature = str(sig.get("timestamp", "")), str(sig.get("token", "")), str(sig.get("signature", ""))
    expected = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise WebhookRefused("Mailgun signature does not verify")
    _fresh(cfg, timestamp, now)


def mailgun_events(data: Mapping[str, Any]) -> list[Event]:
    ev = data.get("event-data")
    if not isinstance(ev, dict):
        raise WebhookPayloadError("no event-data")
    address, ref, kind = str(ev.get("recipient", "")), str(ev.get("id", "")), ev.get("event")
    if kind == "complained":
        return [Event(address, BounceKind.COMPLAINT, "mailgun", "complained", ref)]
    if kind == "failed":
        severity = ev.get("severity")
        detail = str((ev.get("delivery-status") or {}).get("description") or severity)
        return [Event(address, BounceKind.HARD if severity == "permanent" else BounceKind.SOFT, "mailgun", detail, ref)]
    return []


# ------------------------------------------------------------------ SendGrid


def verify_sendgrid(cfg: Config, headers: Mapping[str, str], body: bytes, *, now: dt.datetime) -> None:
    env = cfg.webhooks.sendgrid_key_env
    encoded = cfg.secret(env) if env else None
    if not encoded:
        raise WebhookRefused("webhooks.sendgrid_key_env is not set")
    signature = headers.get("x-twilio-email-event-webhook-signature", "")
    timestamp = headers.get("x-twilio-email-event-webhook-timestamp", "")
    if not signature or not timestamp:
        raise WebhookRefused("no SendGrid signature headers")
    try:
        key = serialization.load_der_public_key(base64.b64decode(encoded))
    except (ValueError, binascii.Error) as exc:
        raise WebhookRefused(f"${env} is not a base64 DER public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise WebhookRefused(f"${env} is not an ECDSA key")
    try:
        key.verify(base64.b64decode(signature), timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise WebhookRefused("SendGrid signature does not verify") from exc
    _fresh(cfg, timestamp, now)


def sendgrid_events(body: bytes) -> list[Event]:
    data = _json(body)
    if not isinstance(data, list):
        raise WebhookPayloadError("SendGrid payload is not a list of events")
    out: list[Event] = []
    for ev in data:
        if not isinstance(ev, dict):
            continue
        address, ref, kind = str(ev.get("email", "")), str(ev.get("sg_event_id", "")), ev.get("event")
        if kind == "spamreport":
            out.append(Event(address, BounceKind.COMPLAINT, "sendgrid", "spamreport", ref))
        elif kind == "bounce":
            hard = ev.get("type", "bounce") == "bounce"  # "blocked" is a temporary refusal
            out.append(Event(address, BounceKind.HARD if hard else BounceKind.SOFT, "sendgrid", str(ev.get("reason", "")), ref))
    return out
