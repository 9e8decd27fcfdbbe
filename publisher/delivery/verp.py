"""VERP return paths: ``bounce+<issue>.<subscriber>.<mac>@domain``, one per delivery.

A DSN goes back to the envelope sender, so the address it is sent to says
which reader and which issue bounced, whatever the DSN's body looks like.
The short HMAC (a purpose-derived key) stops anyone who can mail the bounce
box from bouncing arbitrary subscribers out of the list.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from dataclasses import dataclass

from ..core.config import Config

_TOKEN = re.compile(r"^(\d+)\.(\d+)\.([0-9a-f]{10})$")


@dataclass(frozen=True, slots=True)
class VerpToken:
    issue_id: int
    subscriber_id: int


@functools.lru_cache(maxsize=8)
def _derived(key: bytes) -> bytes:
    # Once per key, not once per delivery: a send computes one address per reader.
    return hmac.new(key, b"publisher.verp", hashlib.sha256).digest()


def _mac(key: bytes, issue_id: int, subscriber_id: int) -> str:
    return hmac.new(_derived(key), f"{issue_id}.{subscriber_id}".encode(), hashlib.sha256).hexdigest()[:10]


def verp_address(cfg: Config, key: bytes, issue_id: int, subscriber_id: int) -> str | None:
    """The envelope sender for one delivery; None without ``bounces.return_path``."""
    base = cfg.bounces.return_path
    if not base:
        return None
    local, _, domain = base.rpartition("@")
    return f"{local}+{issue_id}.{subscriber_id}.{_mac(key, issue_id, subscriber_id)}@{domain}"


def read_verp(cfg: Config, key: bytes, address: str) -> VerpToken | None:
    """The delivery a bounce address names, or None (not ours, or a forged token)."""
    base = cfg.bounces.return_path
    if not base:
        return None
    local, _, domain = base.rpartition("@")
    got_local, _, got_domain = address.strip().strip("<>").rpartition("@")
    prefix = local + "+"
    if got_domain.lower() != domain.lower() or not got_local.lower().startswith(prefix.lower()):
        return None
    m = _TOKEN.match(got_local[len(prefix):].lower())
    if not m:
        return None
    issue_id, subscriber_id = int(m.group(1)), int(m.group(2))
    if not hmac.compare_digest(m.group(3), _mac(key, issue_id, subscriber_id)):
        return None
    return VerpToken(issue_id, subscriber_id)
