"""Related stories' titles in a parallel build: learnt before the pages, put right after recording.

A story page lists its related stories by title. The workers of a build
render pages in parallel, each seeing only its own briefs, so the titles
are gathered first from every brief's head (:func:`titles_ahead`, a fifth
of a parse each) and inherited by the workers that render the pages. After
recording, the store is the truth: :func:`pages_again` names the few pages
that saw another title than the store's (or a page a rejected file wrote),
which the workers render again.
"""

from __future__ import annotations

from ..core.config import Config
from . import watch
from .fileindex import FileIndex
from .outputs import remove_web_issue
from .reading import PageJob, identify_chunk, map_chunks, related_titles
from .results import SyncResult


def titles_ahead(cfg: Config, chunks: list[list[tuple[str, watch.Stat]]], n_workers: int) -> dict[str, str]:
    """slug → title of each story the build is to publish, read by the workers from the briefs' heads;
    the first file in path order wins a slug, as recording decides in a fresh store."""
    titles: dict[str, str] = {}
    for found in map_chunks(cfg, identify_chunk, list(chunks), n_workers):
        for slug, title in found:
            titles.setdefault(slug, title)
    return titles


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
