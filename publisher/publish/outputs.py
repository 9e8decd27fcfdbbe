"""Writing the public folder: atomic, and silent when nothing changed.

Feed readers poll these files. A reader must never see half a file (so we
write a temp file in the same folder and rename it over the old one), and an
unchanged file must keep its mtime (so ETag/Last-Modified stay stable and
readers get 304s). Files that belong together are all staged before any is
renamed: a full disk fails while staging and leaves every old file in place.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path


def _unchanged(path: Path, data: bytes) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        if os.fstat(fd).st_size != len(data):
            return False
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read() == data
    finally:
        os.close(fd)


def _umask() -> int:
    """The process's umask, read once without changing it (Linux shows it in /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o777  # unknown: always set the mode explicitly


_UMASK = _umask()
# A temp name unique to this process and call: the pid tells forked build
# workers apart, the counter threads; O_EXCL settles any leftover of an
# earlier process with the same pid. No random names, no retry loop.
_serial = itertools.count()
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def _open_temp(path: Path) -> tuple[int, str]:
    while True:
        tmp = f"{path.parent}/.{path.name}.{os.getpid()}.{next(_serial)}.tmp"
        try:
            return os.open(tmp, _FLAGS, 0o644), tmp
        except FileExistsError:
            continue  # left by a dead process whose pid this one has


def _stage(path: Path, data: bytes) -> str:
    """A temp file beside ``path`` holding ``data``; removed again if writing fails.

    No fsync: a crash may lose the newest version of a page, never leave a
    half one in its place (the rename is atomic), and a rebuild writes it
    again; syncing every page would cost more than the rest of the write.
    """
    try:
        fd, tmp = _open_temp(path)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)  # the first file of its folder
        fd, tmp = _open_temp(path)
    try:
        if _UMASK & 0o644:
            os.fchmod(fd, 0o644)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


def write_all_atomic(items: Sequence[tuple[Path, bytes]]) -> list[Path]:
    """Write every changed (path, data) pair, staging all before renaming any; the paths written."""
    changed = [(path, data) for path, data in items if not _unchanged(path, data)]
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in changed:
            staged.append((_stage(path, data), path))
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _path in staged:
            Path(tmp).unlink(missing_ok=True)
        raise
    return [path for path, _data in changed]


def write_atomic(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` atomically; False (file untouched) when unchanged."""
    return bool(write_all_atomic([(path, data)]))


def remove(path: Path) -> bool:
    """Remove a published file; True when something was removed."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def remove_web_issue(public: Path, slug: str) -> list[str]:
    """Remove a story's web issue files; the relative paths that were there."""
    return [f"issues/{slug}{suffix}" for suffix in (".html", ".txt") if remove(public / "issues" / f"{slug}{suffix}")]
