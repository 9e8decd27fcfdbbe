"""The one cache of parsed briefs, shared by feeds, issues, previews, digests and the desk.

Keyed by content hash: an unchanged story is parsed once per process, and
its source (the big column) is read from the store only on a miss. The
pipeline hands the same Brief object for unchanged content, which is what
lets the feed renderer's identity-keyed memos hit.
"""

from __future__ import annotations

import threading

from cachetools import LRUCache

from ..briefs.model import Brief
from ..briefs.parse import parse_brief
from ..core.config import Config
from ..store import stories
from ..store.engine import Connection
from ..store.stories import StoryRef

SIZE = 4096


class BriefCache:
    def __init__(self, cfg: Config, size: int = SIZE) -> None:
        self.cfg = cfg
        self._data: LRUCache[str, Brief] = LRUCache(maxsize=size)
        self._lock = threading.Lock()

    def remember(self, content_hash: str, brief: Brief) -> Brief:
        with self._lock:
            self._data[content_hash] = brief
        return brief

    def brief(self, conn: Connection, ref: StoryRef) -> Brief:
        """The stored story ``ref`` as a Brief; its source is read only on a cache miss."""
        with self._lock:
            hit = self._data.get(ref.content_hash)
        if hit is not None:
            return hit
        source = stories.source(conn, ref.slug)
        brief = parse_brief(source, str(self.cfg.paths.briefs / ref.path), base_url=self.cfg.site.base_url)
        return self.remember(ref.content_hash, brief)

    def get(self, conn: Connection, slug: str) -> Brief:
        """The stored story ``slug`` as a Brief (NotFound when there is none)."""
        return self.brief(conn, stories.ref(conn, slug))
