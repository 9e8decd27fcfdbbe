"""DKIM signing (RFC 6376, RFC 8463): rsa-sha256 and ed25519-sha256, one signature per message.

Why not ``dkim.sign`` from dkimpy: it does the RSA arithmetic in Python
(about 140 signatures/s for a 2048-bit key on the development machine),
which would cap a send far below the relay. Here the private key is parsed
once and the signature made by OpenSSL through ``cryptography``; dkimpy
verifies what we sign (tests, ``publisher doctor``).

Canonicalisation is relaxed for headers and simple for the body: the body
is ours, written with CRLF and no trailing blanks, so simple costs one hash
of the bytes while relaxed would cost two regex passes over 40 KB per reader.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from ..core.config import Config
from ..core.errors import ConfigError, ConfigProblem, DeliveryError

# What RFC 8058 and the bulk-sender rules need covered, in signing order.
SIGNED_HEADERS: tuple[str, ...] = (
    "from", "to", "subject", "date", "message-id", "list-id", "list-unsubscribe",
    "list-unsubscribe-post", "mime-version", "content-type",
)

_WSP = re.compile(rb"[ \t]+")
_FOLD = re.compile(rb"\r\n(?=[ \t])")

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def _relaxed(name: bytes, value: bytes) -> bytes:
    """Relaxed header canonicalisation (RFC 6376 3.4.2)."""
    value = _WSP.sub(b" ", _FOLD.sub(b"", value)).strip(b" \t\r\n")
    return name.strip().lower() + b":" + value


# Cached, as most headers are the issue's own.
_canon_header = functools.lru_cache(maxsize=512)(_relaxed)


def _headers(head: bytes) -> list[tuple[bytes, bytes]]:
    """(name, raw value) pairs of a CRLF header block, folded lines kept in the value."""
    out: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and out:
            name, value = out[-1]
            out[-1] = (name, value + b"\r\n" + line)
        elif line:
            name, _, value = line.partition(b":")
            out.append((name, value))
    return out


def _simple_tail(body: bytes) -> bytes:
    """Simple body canonicalisation (RFC 6376 3.4.3): trailing empty lines go, one CRLF ends the body."""
    while body.endswith(b"\r\n\r\n"):
        body = body[:-2]
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body


def _body_hash(body: bytes) -> bytes:
    return hashlib.sha256(_simple_tail(body)).digest()


def unwire(payload: bytes) -> bytes:
    """The message inside an SMTP DATA payload (dot-stuffing and terminator undone)."""
    body = payload[: -len(b".\r\n")] if payload.endswith(b"\r\n.\r\n") else payload
    if body.startswith(b".."):
        body = body[1:]
    return body.replace(b"\r\n..", b"\r\n.")


@dataclass(frozen=True)
class Signer:
    """A parsed key and where its public half lives (``selector._domainkey.domain``)."""

    domain: str
    selector: str
    key: PrivateKey

    @property
    def algorithm(self) -> str:
        return "ed25519-sha256" if isinstance(self.key, ed25519.Ed25519PrivateKey) else "rsa-sha256"

    def signature_header(self, message: bytes) -> bytes:
        """The ``DKIM-Signature`` header line (CRLF-terminated) for a CRLF message."""
        head, sep, body = message.partition(b"\r\n\r\n")
        if not sep:
            raise DeliveryError("cannot sign a message without a header/body separator")
        present = {}
        for name, value in _headers(head):
            present[name.strip().lower()] = (name, value)  # the last instance is the one signed
        names = [h for h in SIGNED_HEADERS if h.encode() in present]
        data = b"".join(_canon_header(*present[n.encode()]) + b"\r\n" for n in names)
        return self.header_for(":".join(names), data, _body_hash(body))

    def header_for(self, names: str, canonical_headers: bytes, body_hash: bytes) -> bytes:
        """The ``DKIM-Signature`` line over headers already canonicalised (each ending
        in CRLF, in ``names`` order) and a body hash: the last step of :meth:`signature_header`."""
        bh = base64.b64encode(body_hash).decode("ascii")
        sig_value = (
            f" v=1; a={self.algorithm}; c=relaxed/simple; d={self.domain}; s={self.selector};\r\n"
            f"\th={names};\r\n\tbh={bh};\r\n\tb="
        ).encode("ascii")
        sig = self._sign(canonical_headers + _relaxed(b"DKIM-Signature", sig_value))
        b64 = base64.b64encode(sig)
        folded = b"\r\n\t".join(b64[i : i + 72] for i in range(0, len(b64), 72))
        return b"DKIM-Signature:" + sig_value + folded + b"\r\n"

    def _sign(self, data: bytes) -> bytes:
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            # RFC 8463: PureEdDSA over the SHA-256 digest of the signed data.
            return self.key.sign(hashlib.sha256(data).digest())
        return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def sign(self, message: bytes) -> bytes:
        return self.signature_header(message) + message

    def sign_wire(self, payload: bytes, message: bytes | None = None) -> bytes:
        """Sign an SMTP DATA payload (dot-stuffed, terminated): the header goes in front.
        ``message``: the same message before wire conversion, if the caller has it (saves a pass)."""
        return self.signature_header(message if message is not None else unwire(payload)) + payload

    def resign(self, message: bytes) -> bytes:
        """Drop our earlier signature and sign again (after a transfer-encoding change)."""
        head, sep, body = message.partition(b"\r\n\r\n")
        kept = [
            n + b":" + v for n, v in _headers(head) if n.strip().lower() != b"dkim-signature"
        ]
        return self.sign(b"\r\n".join(kept) + sep + body)

    def dns_record(self) -> str:
        """The TXT record to publish at ``<selector>._domainkey.<domain>``."""
        return dns_record(self.key)


# Stands in for a per-reader value while a template is planned; never sent.
_SENTINEL = b"\x00\x01dkim-slot-%d\x01\x00"


@dataclass(frozen=True)
class SignPlan:
    """Signing every reader's copy of one template, with the shared work done once.

    The headers that do not change are canonicalised once; a per-reader one
    is ``prefix + value + suffix`` (its values carry no CR or LF and no leading,
    trailing or repeated whitespace, so relaxed canonicalisation leaves them as they are). The body is hashed
    once up to the first per-reader value and the hash state copied for each
    reader (simple canonicalisation touches only the constant tail). Per
    reader there remain: the rest of the body hash, a few joins, one signature.
    """

    signer: Signer
    names: str
    fields: tuple[tuple[bytes, int, bytes], ...]  # (canonical prefix, slot or -1, suffix + CRLF)
    body: hashlib._Hash  # hash state after the body's constant start
    body_rest: tuple[tuple[int, bytes], ...]  # (slot, the constant bytes after it), canonical tail last

    def header(self, values: Sequence[bytes]) -> bytes:
        data = b"".join(p if slot < 0 else p + values[slot] + s for p, slot, s in self.fields)
        h = self.body.copy()
        for slot, chunk in self.body_rest:
            h.update(values[slot])
            h.update(chunk)
        return self.signer.header_for(self.names, data, h.digest())


def plan_signing(signer: Signer, chunks: Sequence[bytes], slots: Sequence[int]) -> SignPlan | None:
    """A :class:`SignPlan` for a message made of ``chunks`` interleaved with per-reader
    ``slots``, whose values are non-empty and hold no CR or LF and no leading, trailing or
    repeated whitespace. None when the layout is unusual (no separator, two values in one signed
    header): sign whole messages then. :mod:`publisher.mail.wire` checks the plan against
    :meth:`Signer.signature_header` with probe readers before using it."""
    sentinels = [_SENTINEL % slot for slot in slots]
    sep_at = next((i for i, c in enumerate(chunks) if b"\r\n\r\n" in c), None)
    if sep_at is None:
        return None
    cut = chunks[sep_at].index(b"\r\n\r\n")
    head = b"".join(c + v for c, v in zip(chunks[:sep_at], sentinels)) + chunks[sep_at][:cut]
    present = {}
    for name, value in _headers(head):
        present[name.strip().lower()] = (name, value)
    names = [h for h in SIGNED_HEADERS if h.encode() in present]
    fields: list[tuple[bytes, int, bytes]] = []
    for n in names:
        name, value = present[n.encode()]
        inside = [slot for slot, mark in zip(slots, sentinels) if mark in value]
        if not inside:
            fields.append((_canon_header(name, value) + b"\r\n", -1, b""))
            continue
        if len(inside) > 1:
            return None
        before, _, after = value.partition(_SENTINEL % inside[0])
        prefix = _relaxed(name, before + b"x")[:-1]
        suffix = _relaxed(b"x", b"x" + after)[len(b"x:x"):]
        fields.append((prefix, inside[0], suffix + b"\r\n"))
    pieces = [chunks[sep_at][cut + 4 :], *chunks[sep_at + 1 :]]
    rest = list(zip(slots[sep_at:], pieces[1:]))
    if rest:
        rest[-1] = (rest[-1][0], _simple_tail(rest[-1][1]))
        body = hashlib.sha256(pieces[0])
    else:
        body = hashlib.sha256(_simple_tail(pieces[0]))
    return SignPlan(signer, ":".join(names), tuple(fields), body, tuple(rest))


def dns_record(key: PrivateKey) -> str:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return "v=DKIM1; k=ed25519; p=" + base64.b64encode(raw).decode("ascii")
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode("ascii")


@functools.lru_cache(maxsize=8)
def parse_key(data: bytes, where: str) -> PrivateKey:
    """A PEM key (RSA or Ed25519), or dkimpy's raw base64 Ed25519 seed; parsed once per process."""
    text = data.strip()
    try:
        if b"-----BEGIN" in text:
            key = serialization.load_pem_private_key(text, password=None)
        else:
            key = ed25519.Ed25519PrivateKey.from_private_bytes(base64.b64decode(text, validate=True))
    except (ValueError, TypeError) as exc:
        raise ConfigError(where, [ConfigProblem("dkim.private_key", f"not a usable private key: {exc}")]) from exc
    if not isinstance(key, (rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise ConfigError(where, [ConfigProblem("dkim.private_key", "only RSA and Ed25519 keys sign DKIM")])
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < 1024:
        raise ConfigError(where, [ConfigProblem("dkim.private_key", f"RSA key of {key.key_size} bits; use 2048")])
    return key


def signer_for(cfg: Config) -> Signer | None:
    """The configured signer, or None when ``[dkim]`` is not set up."""
    d = cfg.dkim
    if not (d.domain and d.selector and (d.private_key or d.private_key_env)):
        return None
    if d.private_key:
        path = Path(d.private_key).expanduser()
        if not path.is_absolute():
            path = Path(cfg.source).parent / path
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(cfg.source, [ConfigProblem("dkim.private_key", f"{path}: {exc}")]) from exc
        where = str(path)
    else:
        value = os.environ.get(d.private_key_env, "")
        if not value:
            raise ConfigError(cfg.source, [ConfigProblem("dkim.private_key_env", f"${d.private_key_env} is empty")])
        data, where = value.encode("utf-8"), f"${d.private_key_env}"
    return Signer(d.domain, d.selector, parse_key(data, where))
