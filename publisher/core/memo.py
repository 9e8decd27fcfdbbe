"""One small thread-safe LRU memo keyed by the *identity* of its owner objects.

The pipeline hands the same Brief object for unchanged content, so identity
is the key wherever hashing a whole Brief would cost more than the lookup
saves (feed entry HTML and XML fragments). A value keeps its owners alive,
so their ids cannot be reused by other objects while the entry exists.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Generic, TypeVar

V = TypeVar("V")


class IdentityMemo(Generic[V]):
    """At most ``size`` values, each kept with (and for) the objects it was made from."""

    # An OrderedDict (C) rather than cachetools' LRUCache: its lookups went
    # through several Python calls each, 1.5-3 us, and a story asks for its
    # coverage view about ten times while it is rendered.
    def __init__(self, size: int) -> None:
        self._size = size
        self._data: OrderedDict[tuple[Any, ...], tuple[tuple[object, ...], V]] = OrderedDict()
        self._lock = threading.Lock()
        _ALL.append(self)

    def get(self, owners: tuple[object, ...], extra: tuple[Any, ...] = ()) -> V | None:
        key = (*map(id, owners), *extra)
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            self._data.move_to_end(key)
        for kept, owner in zip(hit[0], owners):
            if kept is not owner:
                return None
        return hit[1]

    def put(self, owners: tuple[object, ...], extra: tuple[Any, ...], value: V) -> None:
        key = (*map(id, owners), *extra)
        with self._lock:
            self._data[key] = (owners, value)
            self._data.move_to_end(key)
            if len(self._data) > self._size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


# Every memo made, for forget_all.
_ALL: list[IdentityMemo[Any]] = []


def forget_all() -> None:
    """Every memo emptied: for a build worker between chunks, whose stories never come back.
    A memo keeps the Briefs it was made from alive (about 70 KB each, a thousand of them in the
    feed entries' memos), which a worker would otherwise hold beside the build's parent."""
    for memo in _ALL:
        memo.clear()
