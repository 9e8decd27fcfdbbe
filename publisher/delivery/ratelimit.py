"""Rate limits: messages per second (even spacing) and per rolling hour, across threads."""

from __future__ import annotations

import collections
import datetime as dt
import threading
import time
from collections.abc import Callable, Sequence

from ..core.clock import Clock
from ..core.config import Config
from ..store import deliveries as ledger
from ..store.engine import Engine


class RateLimiter:
    """Messages per second (even spacing) and per rolling hour, across threads.

    ``reserve`` books the next slot and says how long to wait for it; the
    hourly window is seeded from the ledger so a restart does not reset it.
    """

    def __init__(
        self,
        per_second: float,
        per_hour: int,
        *,
        history: Sequence[float] = (),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_second = per_second
        self.per_hour = per_hour
        self._mono = monotonic
        self._next = 0.0
        self._lock = threading.Lock()
        self._window: collections.deque[float] = collections.deque(maxlen=per_hour or None)
        if per_hour:
            self._window.extend(sorted(history)[-per_hour:])

    def _slot(self, now: float) -> float:
        t = now
        if self.per_second > 0:
            t = max(t, self._next)
        if self.per_hour and len(self._window) >= self.per_hour:
            t = max(t, self._window[0] + 3600.0)
        return t

    def delay(self) -> float:
        """Seconds until the next slot, without booking it."""
        with self._lock:
            now = self._mono()
            return self._slot(now) - now

    def reserve(self) -> float:
        with self._lock:
            now = self._mono()
            t = self._slot(now)
            if self.per_second > 0:
                self._next = t + 1.0 / self.per_second
            if self.per_hour:
                self._window.append(t)
            return t - now


def limiter_for(cfg: Config, engine: Engine, clock: Clock) -> RateLimiter:
    history: list[float] = []
    if cfg.smtp.rate_per_hour:
        now_wall = clock()
        now_mono = time.monotonic()
        for at in ledger.sent_since(engine, now_wall - dt.timedelta(hours=1)):
            history.append(now_mono - (now_wall - at).total_seconds())
    return RateLimiter(cfg.smtp.rate_per_second, cfg.smtp.rate_per_hour, history=history)

