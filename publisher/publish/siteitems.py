"""Each story's list item (home and tag pages), kept by story version, in memory and in the state folder.

A list item shows the story's dek and coverage line, which only the parsed
brief has: without this, a fresh process would parse the newest stories of
every tag an edit touches (dozens of briefs) before its first edit is out.
Kept in ``state/site-items/<slug>`` as JSON, with the version it was made
from (content hash, site settings, the renderers' code digest, ``LAYOUT``): one that does not match is
a miss, and the brief is parsed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from cachetools import LRUCache

from ..briefs.model import Brief
from ..briefs.slugs import SLUG_RE, tag_slug
from ..core.config import Config
from ..render import site
from ..render.site import StoryItem
from ..store.engine import Connection
from ..store.stories import StoryRef
from .briefcache import BriefCache
from .codedigest import code_digest

log = logging.getLogger(__name__)

LAYOUT = 1  # bump when code changes what an item holds
FOLDER = "site-items"


class ItemCache:
    def __init__(self, cfg: Config, briefs: BriefCache, size: int = 4096) -> None:
        self.cfg = cfg
        self.briefs = briefs
        self.folder = cfg.paths.state / FOLDER
        self._mem: LRUCache[tuple[str, str], tuple[StoryItem, dict[str, str]]] = LRUCache(maxsize=size)
        self._lock = threading.Lock()
        self._salt = hashlib.sha256(repr((LAYOUT, code_digest(), cfg.site)).encode()).hexdigest()
        # A build's tail: waits for the items its worker is keeping meanwhile, before a miss parses a brief.
        self.ahead: Callable[[], None] | None = None

    def _path(self, slug: str) -> Path:
        return self.folder / (slug if SLUG_RE.match(slug) else hashlib.sha256(slug.encode()).hexdigest())

    def get(self, conn: Connection, ref: StoryRef) -> StoryItem:
        return self._get(conn, ref)[0]

    def names(self, conn: Connection, ref: StoryRef) -> dict[str, str]:
        """Tag key → display name, as this story spells its tags and entities (the first spelling of a key)."""
        return self._get(conn, ref)[1]

    def _get(self, conn: Connection, ref: StoryRef) -> tuple[StoryItem, dict[str, str]]:
        key = (ref.slug, ref.content_hash)
        with self._lock:
            hit = self._mem.get(key)
        if hit is None:
            hit = self._load(ref)
            if hit is None and self.ahead is not None:
                self.ahead()
                hit = self._load(ref)
            if hit is None:
                hit = self.keep(ref, self.briefs.brief(conn, ref))
            with self._lock:
                self._mem[key] = hit
        return hit

    def keep(self, ref: StoryRef, brief: Brief) -> tuple[StoryItem, dict[str, str]]:
        """The list item and tag names of ``brief`` (the story ``ref``), kept in the state folder."""
        names: dict[str, str] = {}
        for name in (*brief.tags, *brief.entities):
            names.setdefault(tag_slug(name), " ".join(name.split()))
        hit = (site.story_item(brief, self.cfg), names)
        self._store(ref, *hit)
        return hit

    def _version(self, ref: StoryRef) -> str:
        return f"{self._salt}:{ref.content_hash}"

    def _load(self, ref: StoryRef) -> tuple[StoryItem, dict[str, str]] | None:
        try:
            data = json.loads(self._path(ref.slug).read_bytes())
            if data.get("version") != self._version(ref) or data.get("slug") != ref.slug:
                return None
            item = StoryItem(data["slug"], data["title"], data["dek"], dt.date.fromisoformat(data["date"]), data["coverage"], data["url"])
            return item, {str(k): str(v) for k, v in data["names"].items()}
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, AttributeError):
            return None  # cut short by a crash, or another layout: parse the brief again

    def _store(self, ref: StoryRef, item: StoryItem, names: dict[str, str]) -> None:
        data = {"version": self._version(ref), "slug": item.slug, "title": item.title, "dek": item.dek,
                "date": item.date.isoformat(), "coverage": item.coverage, "url": item.url, "names": names}
        path = self._path(ref.slug)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)  # only a cache: the page is written all the same
            log.warning("list item of %s not kept in %s: %s", ref.slug, self.folder, exc)
