"""Signed tokens for unsubscribe and confirmation links.

A token carries the subscriber id and address, signed with HMAC-SHA256
(itsdangerous' TimestampSigner) under a *purpose* salt, so an unsubscribe token can never
confirm anyone and vice versa. The address is inside the signed payload so
a token stops working if the row's address changes. Verification is
constant-time (itsdangerous compares digests with ``hmac.compare_digest``).

The key comes from the environment variable named by
``security.signing_key_env``; without it a random key is generated once into
``state/signing.key`` (mode 0600) so links stay valid across restarts.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import logging
import os
import re
import secrets
from pathlib import Path
from typing import Literal

from itsdangerous import BadData, TimestampSigner

from ..core.config import Config
from ..core.errors import PublisherError, TokenError

log = logging.getLogger(__name__)

Purpose = Literal["unsubscribe", "confirm"]
PURPOSES: tuple[str, ...] = ("unsubscribe", "confirm")
KEY_FILE = "signing.key"


class KeyFileError(PublisherError):
    """The generated signing key cannot be created or read."""

    def __init__(self, path: Path, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


def signing_key(cfg: Config) -> bytes:
    """The HMAC key: from the environment, else ``state/signing.key`` (created once)."""
    from_env = cfg.secret(cfg.security.signing_key_env)
    if from_env:
        return from_env.encode("utf-8")
    return _key_file(cfg.paths.state / KEY_FILE)


def _key_file(path: Path) -> bytes:
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write a private temp file, then link it into place: link() fails if
    # another process won the race, and then we read the winner's key. The
    # key is hex text so it can be copied verbatim into the env variable.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_hex(32) + "\n")
        try:
            os.link(tmp, path)
            log.info("generated signing key %s", path)
        except FileExistsError:
            pass
    except OSError as exc:
        raise KeyFileError(path, f"cannot create signing key: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    key = path.read_bytes().strip()
    if len(key) < 32:
        raise KeyFileError(path, "signing key is shorter than 32 bytes")
    return key


@functools.lru_cache(maxsize=16)
def _signer(key: bytes, purpose: str) -> TimestampSigner:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    return TimestampSigner(key, salt=f"publisher.{purpose}", digest_method=hashlib.sha256)


def make_token(key: bytes, purpose: str, subscriber_id: int, email: str) -> str:
    """A URL-safe token binding ``purpose``, ``subscriber_id`` and ``email``.

    ``<id>~<base64url(email)>.<timestamp>.<hmac>``: a signer, not a
    serializer, because a send makes one token per recipient and the
    serializer's JSON and zlib steps cost more than the rest of a message.
    """
    address = base64.urlsafe_b64encode(email.encode("utf-8")).rstrip(b"=").decode("ascii")
    return _signer(key, purpose).sign(f"{subscriber_id}~{address}").decode("ascii")


def read_token(key: bytes, purpose: str, token: str, *, max_age: int | None = None) -> tuple[int, str]:
    """``(subscriber_id, email)`` from a token; :class:`TokenError` if it is not genuine.

    ``max_age`` (seconds) expires confirmation links; unsubscribe links
    never expire (RFC 8058 links must keep working).
    """
    if not isinstance(token, str) or not token or len(token) > 2048 or not token.isascii():
        raise TokenError(f"invalid {purpose} token")
    try:
        payload = _signer(key, purpose).unsign(token, max_age=max_age).decode("ascii")
    except BadData as exc:
        raise TokenError(f"invalid {purpose} token") from exc
    # Signed by us, so well-formed unless the key is shared with something else.
    match = _PAYLOAD.fullmatch(payload)
    if match is None:
        raise TokenError(f"invalid {purpose} token payload")
    encoded = match.group(2)
    try:
        email = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise TokenError(f"invalid {purpose} token payload") from exc
    return int(match.group(1)), email


_PAYLOAD = re.compile(r"(\d{1,18})~([A-Za-z0-9_-]+)")
