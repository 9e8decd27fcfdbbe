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

from ..briefs.model import Brief
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
        # A build's tail: versions its worker rendered and kept meanwhile, taken as rendered again by
        # the build (:meth:`adopt`); ``ahead`` waits for them before a miss is rendered.
        self._built: set[str] = set()
        self.ahead: Callable[[], None] | None = None

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
        if self.ahead is not None:
            self.ahead()
        # Fresh (a full build renders again) unless this build's worker rendered it.
        out: list[EntryParts | None] = [
            self._kept(ref.slug, key) if not fresh(ref) or self._built_now(key) else None for ref, key in zip(refs, keys)
        ]
        todo = [i for i, hit in enumerate(out) if hit is None]
        entries = [make_entry(FeedStory(self.briefs.brief(conn, refs[i]), refs[i].published_at, refs[i].updated_at), self.cfg)
                   for i in todo]
        for i, parts in zip(todo, entries_parts(entries, self.cfg)):
            self._store(keys[i], parts)
            out[i] = parts
        return [p for p in out if p is not None]

    def keep(self, stories: Sequence[tuple[StoryRef, Brief]]) -> list[str]:
        """Render (together) and keep the parts of each brief at its ref's version; the version keys of
        those kept in the folder, for :meth:`adopt` (a build's worker, ahead of its tail: headstart)."""
        entries = [make_entry(FeedStory(brief, ref.published_at, ref.updated_at), self.cfg) for ref, brief in stories]
        return [key for (ref, _brief), parts in zip(stories, entries_parts(entries, self.cfg))
                if self._store(key := self.key(ref), parts)]

    def adopt(self, keys: Iterable[str]) -> None:
        """Versions a worker of this build rendered and kept in the folder (:meth:`keep`): read from
        there as the build's own render of them."""
        with self._lock:
            self._built.update(keys)

    def forget_built(self) -> None:
        """The build is over: what its workers rendered is kept parts now, no longer fresh ones."""
        self._built = set()

    def _built_now(self, key: str) -> bool:
        with self._lock:
            return key in self._built

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

    def _store(self, key: str, parts: EntryParts) -> bool:
        """Keep ``parts`` in memory and in the folder; whether the folder has them."""
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
            return False
        return True

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
