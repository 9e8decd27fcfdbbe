"""One small thread-safe LRU memo keyed by the *identity* of its owner objects.

The pipeline hands the same Brief object for unchanged content, so identity
is the key wherever hashing a whole Brief would cost more than the lookup
saves (feed entry HTML and XML fragments). A value keeps its owners alive,
so their ids cannot be reused by other objects while the entry exists.
"""

from __future__ import annotations

import threading
from typing import Any, Generic, TypeVar

from cachetools import LRUCache

V = TypeVar("V")


class IdentityMemo(Generic[V]):
    def __init__(self, size: int) -> None:
        self._data: LRUCache[tuple[Any, ...], tuple[tuple[object, ...], V]] = LRUCache(maxsize=size)
        self._lock = threading.Lock()

    def get(self, owners: tuple[object, ...], extra: tuple[Any, ...] = ()) -> V | None:
        key = (*map(id, owners), *extra)
        with self._lock:
            hit = self._data.get(key)
        if hit is None or any(a is not b for a, b in zip(hit[0], owners)):
            return None
        return hit[1]

    def put(self, owners: tuple[object, ...], extra: tuple[Any, ...], value: V) -> None:
        key = (*map(id, owners), *extra)
        with self._lock:
            self._data[key] = (owners, value)
