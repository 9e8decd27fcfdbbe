"""Files whose last publish failed: retried on later scans, with backoff, logged once.

A failure here is one the file's *content* did not decide (a render over
budget is decided by content too, but the template or the budget may change
without the file changing): a full disk, a render error, a rolled-back
transaction. Such a file is never marked seen, so the next scan reads it
again; the backoff keeps a permanently bad file from being re-read on every
two-second tick, and an edit of the file retries it at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .watch import Stat

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Failure:
    stat: Stat | None
    attempts: int
    next_at: float  # on the monotonic clock
    message: str


class Retries:
    """Not thread-safe on its own: the pipeline calls it under its sync lock."""

    def __init__(self, first: float, *, cap: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.first = max(first, 0.01)
        self.cap = cap
        self.clock = clock
        self._failed: dict[str, Failure] = {}

    def due(self, key: str, stat: Stat | None) -> bool:
        """Whether ``key`` may be tried now: never failed, changed since, or its backoff is over."""
        failure = self._failed.get(key)
        if failure is None or failure.stat != stat:
            return True
        return self.clock() >= failure.next_at

    def failed(self, key: str, stat: Stat | None, message: str) -> bool:
        """Note a failure; True when it is news (first time, or a different message) and worth a log line."""
        before = self._failed.get(key)
        attempts = before.attempts + 1 if before is not None and before.stat == stat else 1
        delay = min(self.cap, self.first * 2 ** (attempts - 1))
        self._failed[key] = Failure(stat, attempts, self.clock() + delay, message)
        return before is None or before.message != message

    def succeeded(self, key: str) -> bool:
        """Forget ``key``; True when it had failed before (worth a 'recovered' log line)."""
        return self._failed.pop(key, None) is not None

    def forget(self, key: str) -> None:
        self._failed.pop(key, None)

    def seconds_to_next(self) -> float | None:
        if not self._failed:
            return None
        return max(0.0, min(f.next_at for f in self._failed.values()) - self.clock())

    def pending(self) -> tuple[str, ...]:
        return tuple(sorted(self._failed))

    def get(self, key: str) -> Failure | None:
        return self._failed.get(key)
