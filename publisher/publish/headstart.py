"""A build's tail, started early: a worker makes the feed entries and list items the tail will show.

Once a build has recorded every story, its tail writes the feeds (each
feed's newest entries) and the site's lists (the home page, tag pages, the
archive). The one worker the build kept from its main pass reads those
newest stories' files and renders their list items, then their feed
entries, keeping them in the state folder while the parent writes the
archive, which needs neither; then it exits. The tail waits for the items
at its first list item missing, for the entries at its first feed, and
reads what the worker kept. A file changed since it was recorded, or a
worker that died, leaves the rest to the tail, which renders from the store
as it does without a head start: who renders an entry never changes what is
written.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING

from ..briefs.model import Brief
from ..briefs.parse import parse_brief
from ..store import stories
from ..store.stories import StoryRef
from . import workers
from .briefcache import BriefCache
from .entrycache import EntryCache
from .feedfiles import MAIN_FEED
from .heads import read_brief
from .siteitems import ItemCache
from .sitepages import HOME_STORIES

if TYPE_CHECKING:
    from .pipeline import Pipeline

log = logging.getLogger(__name__)

# Fewer stories than this the tail renders itself: about a millisecond each, less than handing them over.
HEAD_START_STORIES = 16


# Entries a worker renders together: a feedgen document costs about as much as its first few
# entries, and a batch's renders are let go before the next (a whole feed's worth at once grew
# the worker by 27 MB at 10k briefs, held beside the parent's tail).
BATCH = 32

# The worker's briefs between its two chunks (items_chunk, then entries_chunk): parsed once, about
# 18 KB each, a few hundred of them.
_parsed: list[tuple[StoryRef, Brief]] = []


def items_chunk(refs: Sequence[StoryRef]) -> None:
    """The list items of stories a build's tail will show, made ahead by its worker and kept in the
    state folder, where the tail finds them; the briefs are kept for :func:`entries_chunk`.

    Each brief is read from its file and used only when it is still the
    recorded version (its content hash). A brief that cannot be read, parsed
    or rendered is left to the tail, which renders it from the store and
    reports what fails.
    """
    cfg = workers.config()
    items = ItemCache(cfg, BriefCache(cfg, size=1), size=1)
    _parsed.clear()
    for ref in refs:
        try:
            brief = parse_brief(read_brief(cfg, ref.path), os.path.join(cfg.paths.briefs, ref.path),
                                base_url=cfg.site.base_url)
            if brief.content_hash == ref.content_hash:
                items.keep(ref, brief)
                _parsed.append((ref, brief))
        except Exception:  # noqa: BLE001 - only a head start: the tail renders it and raises with context
            log.debug("%s: list item left to the build's tail", ref.path, exc_info=True)
    workers.chunk_done()


def entries_chunk(_: None = None) -> list[str]:
    """The feed entries of the briefs :func:`items_chunk` read, kept in the state folder; their version
    keys, for the parent to adopt as its own render (what is not kept, the tail renders)."""
    cfg = workers.config()
    entries = EntryCache(cfg, BriefCache(cfg, size=1), size=1)
    kept: list[str] = []
    while _parsed:
        batch = _parsed[:BATCH]
        del _parsed[:BATCH]
        try:
            kept += entries.keep(batch)
        except Exception:  # noqa: BLE001 - as above
            log.debug("feed entries left to the build's tail", exc_info=True)
        workers.chunk_done()
    return kept


def start(pipeline: Pipeline, touched: set[str], pool: workers.WorkerPool | None) -> Future[list[str]] | None:
    """A worker started on each feed's and tag page's newest stories and the home page's; the
    pipeline's caches set to wait for it at their first miss, and the site's lists to go first.
    None without workers, or for too few stories to be worth one."""
    if pool is None:
        return None
    size = pipeline.cfg.feeds.size
    with pipeline.engine.connect() as conn:
        wanted = {r.slug: r for r in stories.newest(conn, None, max(size, HOME_STORIES))}
        for tag in sorted(touched - {MAIN_FEED}):
            wanted.update((r.slug, r) for r in stories.newest(conn, tag, size))
    if len(wanted) < HEAD_START_STORIES:
        return None
    # The build's worker, while the parent writes the archive (a core each): the list items first,
    # which the parent needs first (tag pages, home page), then the feed entries.
    items = pool.submit(items_chunk, sorted(wanted.values(), key=lambda r: r.path))
    entries = pool.submit(entries_chunk, None)

    def take_items() -> None:
        pipeline.site.items.ahead = None  # once
        try:
            items.result()
        except Exception:  # noqa: BLE001 - a worker died: the tail renders what it finds missing
            log.warning("build: list items made ahead were lost; the tail renders them", exc_info=True)

    def take_entries() -> None:
        pipeline.feeds.entries.ahead = None  # once
        try:
            kept = entries.result()
        except Exception:  # noqa: BLE001 - as above
            log.warning("build: feed entries made ahead were lost; the tail renders them", exc_info=True)
            return
        pipeline.feeds.entries.adopt(kept)

    pipeline.site.items.ahead, pipeline.feeds.entries.ahead = take_items, take_entries
    pipeline.outputs.lists_first = True
    return entries


def stop(pipeline: Pipeline) -> None:
    """The build is over: the caches stop waiting, the lists go back to their order."""
    pipeline.feeds.entries.ahead = pipeline.site.items.ahead = None
    pipeline.outputs.lists_first = False
    pipeline.feeds.entries.forget_built()
