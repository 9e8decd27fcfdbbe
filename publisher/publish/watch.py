"""The briefs folder as data: scan it (I/O) and plan what to do (pure).

Polling is the source of truth: every scan stats every brief file, which is
cheap (no reads). Only files whose (mtime, size) differ from the index are
read and hashed, and only once they are *stable*: untouched for the quiet
period, so a brief being written or copied in chunks is never read half way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..briefs.files import is_brief_name

# Editor and tool leftovers that end in a brief suffix or sit beside briefs.
_TEMP_SUFFIXES = (".swp", ".swo", ".swx", ".tmp", ".part", ".crdownload", "~")


def is_watched(name: str) -> bool:
    return is_brief_name(name) and not name.lower().endswith(_TEMP_SUFFIXES)


@dataclass(frozen=True, slots=True)
class Stat:
    mtime_ns: int
    size: int


@dataclass(frozen=True, slots=True)
class Indexed:
    """What the store knows of a file from the last time it was read."""

    stat: Stat
    sha256: str
    slug: str | None


@dataclass(frozen=True)
class Plan:
    read: tuple[str, ...] = ()  # changed and stable: read, hash, maybe publish
    removed: tuple[str, ...] = ()  # in the index, gone from the folder
    waiting: tuple[str, ...] = ()  # changed but still being written
    retry_after: float | None = None  # seconds until the first waiting file is stable

    @property
    def idle(self) -> bool:
        return not (self.read or self.removed or self.waiting)


def _stat(path: str | Path, follow_symlinks: bool) -> os.stat_result:
    """The file's own stat; through a link only when links are followed (then an edit of the target counts)."""
    if follow_symlinks:
        try:
            return os.stat(path)
        except FileNotFoundError:
            pass  # a dangling link: its own stat, so it is read and refused with a reason
    return os.lstat(path)


def scan(folder: Path, *, follow_symlinks: bool = False, blind: set[str] | None = None) -> dict[str, Stat]:
    """Every watched file under ``folder`` (relative POSIX path → stat); hidden folders skipped.

    Links, FIFOs and other non-regular entries with a brief's name are listed
    too, from their own ``lstat`` (never opened here): reading refuses them
    with a reason that shows in ``status``, rather than skipping them silently.
    A subfolder that cannot be listed (permissions, an I/O error) is added to
    ``blind`` as its prefix: its files are unknown, not gone. The folder
    itself failing raises: that is no scan at all.
    """
    out: dict[str, Stat] = {}
    stack = [(folder, "")]
    while stack:
        current, prefix = stack.pop()
        try:
            entries = list(os.scandir(current))
        except FileNotFoundError:
            continue
        except OSError:
            if not prefix or blind is None:
                raise
            blind.add(prefix)
            continue
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((Path(entry.path), f"{prefix}{name}/"))
                elif is_watched(name):
                    st = _stat(entry.path, follow_symlinks)
                    out[prefix + name] = Stat(st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                continue  # deleted between listing and stat: the next scan sees it gone
    return out


def plan(index: Mapping[str, Indexed], seen: Mapping[str, Stat], *, now_ns: int, quiet: float) -> Plan:
    """Pure: compare a scan with the index. ``now_ns`` is wall-clock time in ns."""
    quiet_ns = int(quiet * 1e9)
    read: list[str] = []
    waiting: list[str] = []
    retry: float | None = None
    for path, st in seen.items():
        known = index.get(path)
        if known is not None and known.stat == st:
            continue
        age = now_ns - st.mtime_ns
        if age >= quiet_ns:
            read.append(path)
        else:
            waiting.append(path)
            wait = (quiet_ns - age) / 1e9
            retry = wait if retry is None else min(retry, wait)
    removed = [p for p in index if p not in seen]
    return Plan(tuple(sorted(read)), tuple(sorted(removed)), tuple(sorted(waiting)), retry)


def scan_one(path: Path, *, follow_symlinks: bool = False) -> Stat | None:
    """The stat of one file now, as :func:`scan` takes it (None when it is gone)."""
    try:
        st = _stat(path, follow_symlinks)
    except FileNotFoundError:
        return None
    return Stat(st.st_mtime_ns, st.st_size)
