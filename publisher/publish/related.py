"""Related stories' titles in a parallel build: learnt before the pages, put right after recording.

A story page lists its related stories by title. The workers of a build
render pages in parallel, each seeing only its own briefs, so the titles
are gathered first from every brief's head (publish.heads, a fifth of a
parse each) and inherited by the workers that render the pages. After
recording, the store is the truth: :func:`pages_again` names the few pages
that saw another title than the store's (or a page a rejected file wrote),
which the workers render again.
"""

from __future__ import annotations

from ..core.config import Config
from ..store.engine import Engine
from .briefcache import BriefCache
from .fileindex import FileIndex
from .outputs import remove_web_issue
from .reading import PageJob, page_chunk, related_titles, write_web_issue
from .results import SyncResult
from .workers import WorkerPool, chunked, map_chunks

POOLED_PAGES = 32  # fewer pages to render again after a build are rendered in the parent


def pages_again(cfg: Config, linked: dict[str, str], ahead: dict[str, str], titles: dict[str, str], lost: set[str],
                index: FileIndex, result: SyncResult) -> list[PageJob]:
    """Web issues the workers got wrong, to render again.

    ``linked``: slug → its related slugs ("\\n"-joined); ``titles``: the
    store's titles of every slug named or ``lost`` (claimed by a file that
    another file's slug kept). A worker rendered its page with ``ahead``;
    the store can disagree (a named story whose body did not parse, a slug
    another file kept, a file changed meanwhile). Where two files claim a
    slug both workers wrote its page: the file that publishes it writes it
    again, or the page goes if none does.
    """
    again: dict[str, dict[str, str]] = {}
    for slug, named in linked.items():
        related = named.split("\n")
        want = related_titles(related, titles)
        if want != related_titles(related, ahead) or slug in lost:
            again[slug] = want
    for slug in sorted(lost):
        if slug in titles:
            again.setdefault(slug, {})
        else:
            result.written += remove_web_issue(cfg.paths.public, slug)
    return [
        PageJob(path, index[path].sha256, want)
        for slug, want in sorted(again.items())
        if (path := next(iter(index.holders(slug)), None)) is not None
    ]


def write_pages_again(cfg: Config, jobs: list[PageJob], n_workers: int, pool: WorkerPool | None, engine: Engine,
                      briefs: BriefCache, index: FileIndex, result: SyncResult) -> None:
    """Web issues rendered again with their related titles, by the workers (by this process when there
    are few, and from the store for a file changed since the build read it)."""
    left: list[PageJob] = []
    # A few pages cost less here than forking a pool for them (~2 ms a page, tens of ms a pool).
    n_workers = n_workers if len(jobs) >= POOLED_PAGES else 1
    for done in map_chunks(cfg, page_chunk, chunked(jobs, n_workers), n_workers, pool):
        for job, written in done:
            if written is None:
                left.append(job)
            else:
                result.written += written
    with engine.connect() as conn:
        for job in left:
            slug = index[job.path].slug
            if slug:
                result.written += write_web_issue(briefs.get(conn, slug), cfg, None, job.titles)
