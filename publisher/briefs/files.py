"""Brief files on disk: which names count as briefs, finding them, reading one safely.

Reading is hostile-input safe: the file is ``lstat``-ed before it is opened,
so an oversized file is refused without a byte read; a symbolic link or any
other non-regular file (a FIFO, a device) is refused unless links are
allowed, and even then a link must resolve inside the briefs folder; the
file is opened non-blocking (a FIFO can never hang the scan) and never read
past the size limit, whatever its size claims.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
from collections.abc import Iterable
from pathlib import Path

from ..core.errors import BriefError, BriefUnreadable
from .model import Brief
from .parse import SUFFIXES, parse_brief

DEFAULT_MAX_BYTES = 2 * 1024 * 1024
# How a brief file is opened (for reading, or for publish.heads' read-ahead): O_NONBLOCK so a
# FIFO never hangs the open; O_NOFOLLOW added where links are refused.
OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _plainly_inside(path: Path, root: Path) -> bool:
    """Whether ``path``'s folder is ``root`` or under it through real folders, with no '..'.

    Then it resolves inside ``root`` without resolving anything: two
    ``resolve()`` calls (an lstat per component of both absolute paths, in
    Python) were most of the cost of reading a brief. An lstat per folder
    between ``root`` and the file (none for a file directly in ``root``)
    tells the common case; anything else (a link on the way, '..') is left
    to ``resolve()``.
    """
    parent = path.parent
    if parent == root:
        return True
    if not parent.is_relative_to(root):
        return False
    folder = root
    for part in parent.relative_to(root).parts:
        if part == "..":
            return False
        folder = folder / part
        try:
            if not stat_mod.S_ISDIR(os.lstat(folder).st_mode):
                return False  # a link (or gone): resolve() decides
        except OSError:
            return False
    return True


LINK_REFUSED = "skipped: a symbolic link (set briefs.follow_symlinks = true to publish links)"


def _check_folders(path: Path, root: Path | None) -> None:
    """BriefError if a folder between ``root`` and ``path`` was swapped for a link out after the scan."""
    if root is not None and not _plainly_inside(path, root) and not path.parent.resolve().is_relative_to(root.resolve()):
        raise BriefError(str(path), None, f"skipped: {path.parent} resolves outside the briefs folder")


def _target(path: Path, root: Path | None, follow_symlinks: bool) -> Path:
    """The file to open for ``path``: itself, or its link target when links are allowed and it stays inside ``root``."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise BriefUnreadable(str(path), None, f"unreadable: {exc.strerror or exc}") from exc
    _check_folders(path, root)
    if not stat_mod.S_ISLNK(st.st_mode):
        return path
    if not follow_symlinks:
        raise BriefError(str(path), None, LINK_REFUSED)
    target = path.resolve()
    if root is not None and not target.is_relative_to(root.resolve()):
        raise BriefError(str(path), None, f"skipped: a symbolic link to {target}, outside the briefs folder")
    return target


def _is_link(path: str | Path) -> bool:
    try:
        return stat_mod.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def read_brief_bytes(path: str | Path, *, root: Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
                     follow_symlinks: bool = False) -> bytes:
    """The bytes of one brief file, or a BriefError saying why it was refused."""
    name = os.fspath(path)
    if follow_symlinks or os.name != "posix":
        target: str | Path = _target(Path(name), root, follow_symlinks)
    else:
        # Links are refused: O_NOFOLLOW makes the open itself refuse one (ELOOP,
        # told apart below), which spares an lstat per read. The folders on the
        # way are still checked, but for a file named directly in ``root`` (by
        # strings: two Path objects cost more than the read).
        if root is None or os.path.dirname(name) != os.fspath(root):
            _check_folders(Path(name), root)
        target = name
    flags = OPEN_FLAGS | (0 if follow_symlinks else NO_FOLLOW)
    try:
        fd = os.open(target, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            if target is name and _is_link(name):
                raise BriefError(name, None, LINK_REFUSED) from exc
            raise BriefError(name, None, "skipped: became a symbolic link while being read") from exc
        raise BriefUnreadable(name, None, f"unreadable: {exc.strerror or exc}") from exc
    try:
        # fstat on the open file: what is checked is what is read.
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            raise BriefError(name, None, "skipped: not a regular file")
        if st.st_size > max_bytes:
            raise BriefError(name, None, f"refused: {st.st_size} bytes is over briefs.max_bytes ({max_bytes})")
        # A regular file: O_NONBLOCK (there so a FIFO never hangs the open) changes nothing for its reads.
        chunks: list[bytes] = []
        remaining = max_bytes + 1  # one byte more tells a file that grew past the limit
        want = min(remaining, st.st_size + 1)
        while remaining > 0:
            chunk = os.read(fd, want)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
            if len(chunk) == st.st_size < want:
                break  # the whole file as fstat sized it, in one read: no read of its end needed
            want = min(remaining, 1 << 20)
    except OSError as exc:
        raise BriefUnreadable(name, None, f"unreadable: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if remaining <= 0:
        raise BriefError(name, None, f"refused: grew past briefs.max_bytes ({max_bytes}) while being read")
    return b"".join(chunks)


def load_brief(path: str | Path, *, base_url: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
               follow_symlinks: bool = True) -> Brief:
    """Read and parse one file named on the command line; unreadable files become BriefError too."""
    data = read_brief_bytes(path, max_bytes=max_bytes, follow_symlinks=follow_symlinks)
    return parse_brief(data, str(path), base_url=base_url)


def is_brief_name(name: str) -> bool:
    """A file the folder scan should read: .md/.txt, not hidden, not an editor temp file."""
    if name.startswith((".", "#", "~")) or name.endswith(("~", "#")):
        return False
    return name.lower().endswith(SUFFIXES)


def find_briefs(paths: Iterable[Path]) -> list[Path]:
    """Files named directly, plus brief files under folders (sorted, recursive; links and FIFOs included, to be refused by name)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if not q.is_dir() and is_brief_name(q.name) and not any(part.startswith(".") for part in q.relative_to(p).parts)))
        else:
            out.append(p)
    return out
