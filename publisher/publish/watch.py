"""The briefs folder as data: scan it (I/O) and plan what to do (pure).

A full scan stats every brief file (no reads). Only files whose (mtime,
size) differ from the index are read and hashed, and only once they are
*stable*: untouched for the quiet period, so a brief being written or copied
in chunks is never read half way.

While file events work, the service's periodic safety net is a *sweep*
(:func:`sweep`), not a full scan: its cost follows what changed, not the
folder's size (see :class:`Tree` for why it still misses nothing for long).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
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


def scan(folder: Path, *, follow_symlinks: bool = False, blind: set[str] | None = None, tree: Tree | None = None) -> dict[str, Stat]:
    """Every watched file under ``folder`` (relative POSIX path → stat); hidden folders skipped.

    Links, FIFOs and other non-regular entries with a brief's name are listed
    too, from their own ``lstat`` (never opened here): reading refuses them
    with a reason that shows in ``status``, rather than skipping them silently.
    A subfolder that cannot be listed (permissions, an I/O error) is added to
    ``blind`` as its prefix: its files are unknown, not gone. The folder
    itself failing raises: that is no scan at all. ``tree``, when given, is
    filled with what :func:`sweep` compares against later.
    """
    out: dict[str, Stat] = {}
    stack = [(folder, "")]
    if tree is not None:
        tree.reset()
    while stack:
        current, prefix = stack.pop()
        try:
            entries = _list(current, prefix, tree)
        except FileNotFoundError:
            continue
        except OSError:
            if not prefix or blind is None:
                raise
            blind.add(prefix)
            if tree is not None:
                tree.ready = False  # a folder it cannot see: sweeps would be blind to it
            continue
        for entry in entries:
            name = entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((Path(entry.path), f"{prefix}{name}/"))
                elif is_watched(name):
                    st = _stat(entry.path, follow_symlinks)
                    out[prefix + name] = Stat(st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                continue  # deleted between listing and stat: the next scan sees it gone
    return out


class Tree:
    """What the last full scan saw of each folder: its identity and mtime, and its files' inodes.

    Why a sweep can skip stat-ing files: creating, deleting or renaming a
    file changes its folder's mtime, and an editor's safe save (write a
    temporary file, rename it over the brief) also gives the name a new
    inode, which the folder listing reports without a stat. Only an edit in
    place (same inode, folder untouched) slips past both; file events report
    those, and for an event that was lost each sweep also stats a rotating
    slice of the known files (1/``ROTATION`` of them), so every file is
    looked at within ``ROTATION`` sweeps. A folder whose mtime is less than
    ``RACY_NS`` old when read is listed again next time (a coarse clock
    could hide a change made in the same tick).
    """

    ROTATION = 10
    RACY_NS = 2_000_000_000

    def __init__(self) -> None:
        self.ready = False
        self.folders: dict[str, tuple[int, int, dict[str, int]]] = {}  # prefix → (inode, mtime_ns, name → inode)
        self.cursor = 0

    def reset(self) -> None:
        self.folders = {}
        self.ready = True

    def remember(self, prefix: str, st: os.stat_result, files: dict[str, int]) -> None:
        racy = time.time_ns() - st.st_mtime_ns < self.RACY_NS
        self.folders[prefix] = (st.st_ino, -1 if racy else st.st_mtime_ns, files)


def _list(current: Path, prefix: str, tree: Tree | None) -> list[os.DirEntry[str]]:
    """The visible entries of one folder; its stat is taken first, so a change during the listing shows next time."""
    st = os.lstat(current) if tree is not None else None
    entries = [e for e in os.scandir(current) if not e.name.startswith(".")]
    if tree is not None and st is not None:
        tree.remember(prefix, st, {e.name: e.inode() for e in entries if is_watched(e.name)})
    return entries


def _relisted(folder: Path, prefix: str, tree: Tree) -> tuple[dict[str, int], list[str]] | None:
    """A changed folder listed again and remembered: (its watched files' name → inode, its
    subfolders' names); None when it is gone."""
    try:
        entries = _list(folder / prefix, prefix, tree)
    except FileNotFoundError:
        return None
    dirs = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
    files = tree.folders[prefix][2]  # what _list just remembered: every watched name, a folder's too
    if dirs:
        skip = set(dirs)
        files = {name: ino for name, ino in files.items() if name not in skip}
    return files, dirs


def sweep(folder: Path, tree: Tree, known: Sequence[str]) -> list[str] | None:
    """The files a full scan could find changed, found without stat-ing the rest (see :class:`Tree`).

    Returns the paths to look at (new, gone or replaced files, files of a
    folder that appeared or went, and this sweep's slice of ``known``), or
    None when only a full scan will do (never scanned, a folder unreadable).
    """
    if not tree.ready:
        return None
    out: set[str] = set()
    for prefix, (ino, mtime, files) in list(tree.folders.items()):
        try:
            st = os.lstat(folder / prefix)
        except (FileNotFoundError, NotADirectoryError):
            st = None
        if st is not None and st.st_ino == ino and st.st_mtime_ns == mtime:
            continue
        del tree.folders[prefix]
        if st is None:
            out.update(prefix + name for name in files)  # gone with its folder
            continue
        stack = [prefix]
        while stack:  # this folder and any subfolder new to the tree
            current = stack.pop()
            try:
                listed = _relisted(folder, current, tree)
            except OSError:
                tree.ready = False
                return None
            if listed is None:
                if current == prefix:
                    out.update(prefix + name for name in files)  # gone between its stat and its listing
                continue
            now, dirs = listed
            stack += [f"{current}{name}/" for name in dirs if f"{current}{name}/" not in tree.folders]
            if current != prefix:  # new to the tree: all of its files
                out.update(current + name for name in now)
                continue
            # Names that are new or have a new inode (a safe save), and names gone; a file
            # with the same name and inode is left to the slice. Compared as dicts: the
            # folder may hold 100k briefs, and only a few of them changed.
            out.update(prefix + name for name, ino in now.items() if files.get(name) != ino)
            out.update(prefix + name for name in files.keys() - now.keys())
    if known:
        step = -(-len(known) // Tree.ROTATION)
        start = tree.cursor % len(known)
        out.update(known[start : start + step])
        tree.cursor = start + step
    return sorted(out)


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


def scan_named(folder: Path, paths: Iterable[str], *, follow_symlinks: bool = False) -> dict[str, Stat]:
    """:func:`scan` of the named files only (those gone are left out).

    String joins rather than a ``Path`` per file: a sweep names thousands,
    and building paths cost more than the stats themselves.
    """
    root = os.fspath(folder)
    out: dict[str, Stat] = {}
    for rel in paths:
        if not is_watched(rel.rpartition("/")[2]):
            continue
        try:
            st = _stat(os.path.join(root, rel), follow_symlinks)
        except (FileNotFoundError, NotADirectoryError):
            continue  # gone, or a folder on its path became a file
        out[rel] = Stat(st.st_mtime_ns, st.st_size)
    return out
