"""Time as a dependency: renderers take ``now`` from here, never from ``datetime.now``.

Tests pass a :class:`FixedClock`, so output is byte-identical run to run.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol


class Clock(Protocol):
    def __call__(self) -> dt.datetime: ...


def system_clock() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class FixedClock:
    """A clock that says what it is told; ``advance`` moves it."""

    def __init__(self, at: dt.datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self.at = at

    def __call__(self) -> dt.datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at = self.at + dt.timedelta(seconds=seconds)
