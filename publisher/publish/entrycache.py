"""Each story's feed entry parts (Atom, RSS, JSON bytes), kept by story version.

An edit of the newest story rewrites the main feed and its tag feeds: some
two hundred entries, of which one changed. The others are joined from here
(:func:`publisher.render.feeds.assemble`) rather than rendered, and a fresh
process finds them in ``state/feed-entries/<slug>`` instead of parsing and
rendering the stored briefs again (1.3 s → a few ms for the first edit at
10k stories).

A version is the story's content hash and dates plus a *salt*: the feed and
site settings, the digest of the parser's and renderers' code
(:mod:`.codedigest`), the entry template's bytes and ``LAYOUT`` (bumped when
the kept file's own format changes); a full build (``force``) renders
every entry again anyway and overwrites what is kept. A file is the cache's
alone: one that does not match (another version, cut short by a crash) is a
miss, and the entry is rendered again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from cachetools import LRUCache

from ..briefs.slugs import SLUG_RE
from ..core.config import Config
from ..render.feed_entries import ENTRY_TEMPLATE, FeedStory, make_entry
from ..render.feeds import EntryParts, entries_parts
from ..render.templating import search_path
from ..store.engine import Connection
from ..store.stories import StoryRef
from .briefcache import BriefCache
from .codedigest import code_digest

log = logging.getLogger(__name__)

LAYOUT = 1  # bump when code (not settings or templates) changes an entry's bytes
FOLDER = "feed-entries"
_MAGIC = b"publisher-feed-entry 1\n"


def _salt(cfg: Config) -> bytes:
    template = b""
    for folder in search_path(cfg.paths.templates):
        path = Path(folder) / ENTRY_TEMPLATE
        if path.is_file():
            template = path.read_bytes()
            break
    return hashlib.sha256(repr((LAYOUT, code_digest(), cfg.site, cfg.feeds)).encode() + template).digest()


def encode(key: str, parts: EntryParts) -> bytes:
    head = [key, parts.slug, parts.updated.isoformat(), json.dumps(parts.keys, ensure_ascii=False)]
    sizes = b"%d %d %d\n" % (len(parts.atom), len(parts.rss), len(parts.json))
    return _MAGIC + "\n".join(head).encode("utf-8") + b"\n" + sizes + parts.atom + parts.rss + parts.json


def decode(data: bytes, key: str, cfg: Config) -> EntryParts | None:
    """The parts in ``data`` if they are of version ``key`` and whole; else None."""
    if not data.startswith(_MAGIC):
        return None
    lines = data[len(_MAGIC) :].split(b"\n", 5)
    if len(lines) < 6 or lines[0].decode() != key:
        return None
    try:
        slug, updated = lines[1].decode(), dt.datetime.fromisoformat(lines[2].decode())
        keys = tuple((str(k), str(n)) for k, n in json.loads(lines[3]))
        atom_n, rss_n, json_n = (int(x) for x in lines[4].split())
    except ValueError:
        return None
    body = lines[5]
    if len(body) != atom_n + rss_n + json_n:
        return None  # cut short (a crash while writing it): render again
    # The entry's own zone, as the renderer made it (the feed head prints it).
    updated = updated.astimezone(cfg.site.tz)
    return EntryParts(slug, updated, keys, body[:atom_n], body[atom_n : atom_n + rss_n], body[atom_n + rss_n :])


class EntryCache:
    """Entry parts by story version: memory first, then the state folder, else rendered (and kept)."""

    def __init__(self, cfg: Config, briefs: BriefCache, size: int = 4096) -> None:
        self.cfg = cfg
        self.briefs = briefs
        self.folder = cfg.paths.state / FOLDER
        self._mem: LRUCache[str, EntryParts] = LRUCache(maxsize=size)
        self._lock = threading.Lock()
        self._salt_value: bytes | None = None

    def key(self, ref: StoryRef) -> str:
        if self._salt_value is None:
            self._salt_value = _salt(self.cfg)
        version = f"{ref.slug}\n{ref.content_hash}\n{ref.published_at.isoformat()}\n{ref.updated_at.isoformat()}"
        return hashlib.sha256(self._salt_value + version.encode()).hexdigest()

    def _path(self, slug: str) -> Path:
        name = slug if SLUG_RE.match(slug) else hashlib.sha256(slug.encode()).hexdigest()
        return self.folder / name

    def get_many(self, conn: Connection, refs: Sequence[StoryRef], *, fresh: Callable[[StoryRef], bool]) -> list[EntryParts]:
        """The parts of each of ``refs``' versions (distinct stories); those ``fresh`` names are rendered
        again (a full build: code may have changed), together with any not kept."""
        keys = [self.key(ref) for ref in refs]
        out: list[EntryParts | None] = [None if fresh(ref) else self._kept(ref.slug, key) for ref, key in zip(refs, keys)]
        todo = [i for i, hit in enumerate(out) if hit is None]
        entries = [make_entry(FeedStory(self.briefs.brief(conn, refs[i]), refs[i].published_at, refs[i].updated_at), self.cfg)
                   for i in todo]
        for i, parts in zip(todo, entries_parts(entries, self.cfg)):
            self._store(keys[i], parts)
            out[i] = parts
        return [p for p in out if p is not None]

    def _kept(self, slug: str, key: str) -> EntryParts | None:
        with self._lock:
            hit = self._mem.get(key)
        if hit is None:
            hit = self._load(slug, key)
            if hit is not None:
                with self._lock:
                    self._mem[key] = hit
        return hit

    def _load(self, slug: str, key: str) -> EntryParts | None:
        try:
            data = self._path(slug).read_bytes()
        except FileNotFoundError:
            return None
        return decode(data, key, self.cfg)

    def _store(self, key: str, parts: EntryParts) -> None:
        with self._lock:
            self._mem[key] = parts
        path = self._path(parts.slug)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(encode(key, parts))
            os.replace(tmp, path)
        except OSError as exc:
            # Only a cache: the feed is written all the same; the next process renders this entry again.
            tmp.unlink(missing_ok=True)
            log.warning("feed entry of %s not kept in %s: %s", parts.slug, self.folder, exc)

    def prune(self, keep: Iterable[str]) -> int:
        """Remove the kept parts of stories not in ``keep`` (slugs): after a full build, what no feed holds."""
        wanted = {self._path(slug).name for slug in keep}
        removed = 0
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return 0
        for name in names:
            if name not in wanted:
                (self.folder / name).unlink(missing_ok=True)
                removed += 1
        return removed
