"""Opaque signed tokens for unsubscribe and confirmation links.

A token is ``<subscriber id>[-<bind>].<issued, base 36>.<HMAC-SHA256>``: the
address is never in it (a leaked link or log line names nobody), but it is
inside the MAC, so a token stops working if the row's address changes. The
purpose is inside the MAC too, so an unsubscribe token never confirms
anyone. ``bind`` ties a confirm token to one sign-up, so a link from before
an unsubscribe is void. Checking needs the address, so it goes in two steps:
:func:`parse_token` (the id, from the text alone), then :func:`verify_token`
(constant-time) with the address the store holds for that id.

Unsubscribe links sent before this format (``<id>~<base64 address>``, signed
by itsdangerous) are still honoured, as they sit in readers' inboxes and
cannot be forged without the key; old confirm links are not.

The key comes from the environment variable named by
``security.signing_key_env``; without it a random key is generated once into
``state/signing.key`` (mode 0600) so links stay valid across restarts.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
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
    try:
        # The state folder: private, as it holds this key and the subscriber store.
        path.parent.mkdir(parents=True, mode=0o700)
    except FileExistsError:
        pass
    else:
        os.chmod(path.parent, 0o700)
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
def _legacy_signer(key: bytes, purpose: str) -> TimestampSigner:
    return TimestampSigner(key, salt=f"publisher.{purpose}", digest_method=hashlib.sha256)


@dataclass(frozen=True, slots=True)
class TokenClaim:
    """What a token says before it is checked: whose it is, what it is bound to, when it was made."""

    subscriber_id: int
    bind: str
    issued: int  # Unix seconds


def _mac(key: bytes, purpose: str, subscriber_id: int, bind: str, issued: int, email: str) -> str:
    message = "\x00".join(("publisher.token", purpose, str(subscriber_id), bind, str(issued), email)).encode("utf-8")
    return base64.urlsafe_b64encode(hmac.new(key, message, hashlib.sha256).digest()).rstrip(b"=").decode("ascii")


def _check_purpose(purpose: str) -> None:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")


def make_token(key: bytes, purpose: str, subscriber_id: int, email: str, *, bind: str = "", now: float | None = None) -> str:
    """A URL-safe opaque token for ``purpose``, ``subscriber_id`` and ``email`` (and ``bind``, digits)."""
    _check_purpose(purpose)
    if bind and not bind.isdigit():
        raise ValueError(f"token bind must be digits, not {bind!r}")
    issued = int(time.time() if now is None else now)
    head = f"{subscriber_id}-{bind}" if bind else str(subscriber_id)
    return f"{head}.{_base36(issued)}.{_mac(key, purpose, subscriber_id, bind, issued, email)}"


class LinkMaker:
    """:func:`make_token` links for many subscribers, as a send makes one per reader.

    Same tokens, byte for byte; the HMAC is keyed once and copied, and the
    issue time's base-36 form is kept while the second lasts.
    """

    def __init__(self, key: bytes, purpose: str, prefix: str, *, clock: Callable[[], float] = time.time) -> None:
        _check_purpose(purpose)
        self.prefix = prefix
        self._clock = clock
        self._keyed = hmac.new(key, "\x00".join(("publisher.token", purpose, "")).encode("utf-8"), hashlib.sha256)
        self._second = -1
        self._issued = ""

    def url(self, subscriber_id: int, email: str) -> str:
        """``prefix`` + an unbound token for this subscriber and address."""
        now = int(self._clock())
        if now != self._second:
            self._second, self._issued = now, _base36(now)
        mac = self._keyed.copy()
        mac.update(f"{subscriber_id}\x00\x00{now}\x00{email}".encode("utf-8"))
        digest = base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode("ascii")
        return f"{self.prefix}{subscriber_id}.{self._issued}.{digest}"


def parse_token(purpose: str, token: str) -> TokenClaim:
    """The claim a token makes, unchecked; :class:`TokenError` if it is not even well-formed."""
    _check_purpose(purpose)
    if not isinstance(token, str) or not token or len(token) > 2048 or not token.isascii():
        raise TokenError(f"invalid {purpose} token")
    match = _TOKEN.fullmatch(token)
    if match is not None:
        return TokenClaim(int(match.group(1)), match.group(2) or "", int(match.group(3), 36))
    legacy = _LEGACY.fullmatch(token)
    if legacy is not None and purpose == "unsubscribe":
        return TokenClaim(int(legacy.group(1)), "", 0)
    raise TokenError(f"invalid {purpose} token")


def verify_token(key: bytes, purpose: str, token: str, email: str, *, max_age: int | None = None, now: float | None = None) -> TokenClaim:
    """The claim, once the MAC over ``email`` holds (and the token is younger than ``max_age`` s).

    Raises :class:`TokenError` for anything forged, tampered, expired or
    made for another purpose or address.
    """
    claim = parse_token(purpose, token)
    if _LEGACY.fullmatch(token):
        return _verify_legacy(key, purpose, token, email, claim)
    given = token.rsplit(".", 1)[1]
    expected = _mac(key, purpose, claim.subscriber_id, claim.bind, claim.issued, email)
    if not hmac.compare_digest(given.encode("ascii"), expected.encode("ascii")):
        raise TokenError(f"invalid {purpose} token")
    if max_age is not None and (time.time() if now is None else now) - claim.issued > max_age:
        raise TokenError(f"expired {purpose} token")
    return claim


def _verify_legacy(key: bytes, purpose: str, token: str, email: str, claim: TokenClaim) -> TokenClaim:
    try:
        payload = _legacy_signer(key, purpose).unsign(token).decode("ascii")
        encoded = payload.split("~", 1)[1]
        address = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
    except (BadData, IndexError, binascii.Error, UnicodeDecodeError) as exc:
        raise TokenError(f"invalid {purpose} token") from exc
    if not hmac.compare_digest(address.encode("utf-8"), email.encode("utf-8")):
        raise TokenError(f"invalid {purpose} token")
    return claim


def _base36(value: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        value, rest = divmod(value, 36)
        out = digits[rest] + out
        if not value:
            return out


_TOKEN = re.compile(r"(\d{1,18})(?:-(\d{1,18}))?\.([0-9a-z]{1,10})\.[A-Za-z0-9_-]{43}")
_LEGACY = re.compile(r"(\d{1,18})~[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
