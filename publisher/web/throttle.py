"""Counting attempts per peer (or per address) in the store, so every process serving the desk shares one count.

Nothing is kept in memory: each attempt is a row of ``throttle_hits`` and
rows older than the window are pruned as new ones arrive, so rotating
peers cost disk rows that expire, never process memory.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math

from starlette.requests import Request

from ..core.clock import Clock, system_clock
from ..store import guard as guard_store
from ..store.engine import Engine


def peer_key(request: Request) -> str:
    """The real peer: uvicorn rewrites ``client`` from proxy headers only for ``desk.trusted_proxies``.

    IPv6 peers are counted per /64, the block one subscriber line gets.
    """
    host = request.client.host if request.client else "?"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class Throttle:
    """At most ``limit`` hits per key inside ``window`` seconds (blocking calls: use a worker thread)."""

    def __init__(self, engine: Engine, bucket: str, limit: int, window: float, *, clock: Clock = system_clock) -> None:
        self.engine = engine
        self.bucket = bucket
        self.limit = limit
        self.window = dt.timedelta(seconds=window)
        self.clock = clock

    def retry_after(self, key: str) -> int:
        """Seconds until ``key`` may try again; 0 when it may now."""
        now = self.clock()
        count, oldest = guard_store.count_hits(self.engine, self.bucket, key, since=now - self.window)
        if count < self.limit or oldest is None:
            return 0
        return max(1, math.ceil((oldest + self.window - now).total_seconds()))

    def hit(self, key: str) -> None:
        now = self.clock()
        guard_store.add_hit(self.engine, self.bucket, key, at=now, prune_before=now - self.window)

    def reset(self, key: str) -> None:
        guard_store.clear_hits(self.engine, self.bucket, key)
