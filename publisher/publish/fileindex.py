"""The in-memory index of the briefs folder, with the reverse map a build needs.

Recording a brief must know whether another file already publishes its slug.
Walking the whole index for that made every build quadratic (10k briefs: 50M
entry visits, seconds of CPU); keeping slug → paths in step with every write
makes it one dict lookup. Only ``__setitem__``/``__delitem__`` change the
index, so the two maps cannot drift.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterable, Iterator, Mapping, ValuesView

from .watch import Indexed


class FileIndex(Mapping[str, Indexed]):
    """Relative path → what the store knows of that file, plus slug → the paths holding it."""

    __slots__ = ("_files", "_by_slug")

    def __init__(self, entries: Iterable[tuple[str, Indexed]] = ()) -> None:
        self._files: dict[str, Indexed] = {}
        # Usually one path; a set when a file deleted from disk but not yet
        # synced still holds the slug that another file now publishes. (A set
        # for every slug cost ~200 bytes a brief: 20 MB of a 100k build.)
        self._by_slug: dict[str, str | set[str]] = {}
        for path, entry in entries:
            self[path] = entry

    # Reads go straight to the dict: the plan compares every scanned file with it.
    def __getitem__(self, path: str) -> Indexed:
        return self._files[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, path: object) -> bool:
        return path in self._files

    def get(self, path: str, default: Indexed | None = None) -> Indexed | None:  # type: ignore[override]
        return self._files.get(path, default)

    def items(self) -> ItemsView[str, Indexed]:
        return self._files.items()

    def values(self) -> ValuesView[Indexed]:
        return self._files.values()

    def __setitem__(self, path: str, entry: Indexed) -> None:
        old = self._files.get(path)
        if old is not None and old.slug != entry.slug:
            self._unlink(old.slug, path)
        self._files[path] = entry
        if entry.slug:
            held = self._by_slug.setdefault(entry.slug, path)
            if isinstance(held, set):
                held.add(path)
            elif held != path:
                self._by_slug[entry.slug] = {held, path}

    def __delitem__(self, path: str) -> None:
        old = self._files.pop(path)
        self._unlink(old.slug, path)

    def _unlink(self, slug: str | None, path: str) -> None:
        if not slug:
            return
        holders = self._by_slug.get(slug)
        if holders == path:
            del self._by_slug[slug]
        elif isinstance(holders, set):
            holders.discard(path)
            if len(holders) == 1:
                self._by_slug[slug] = holders.pop()

    def holders(self, slug: str) -> list[str]:
        """The files whose last good read published ``slug`` (sorted, for a stable message)."""
        held = self._by_slug.get(slug)
        return [] if held is None else [held] if isinstance(held, str) else sorted(held)
