"""Writing the public folder: atomic, and silent when nothing changed.

Feed readers poll these files. A reader must never see half a file (so we
write a temp file in the same folder and rename it over the old one), and an
unchanged file must keep its mtime (so ETag/Last-Modified stay stable and
readers get 304s). Files that belong together are all staged before any is
renamed: a full disk fails while staging and leaves every old file in place.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path


def _unchanged(path: Path, data: bytes) -> bool:
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except FileNotFoundError:
        return False


def _stage(path: Path, data: bytes) -> str:
    """A temp file beside ``path`` holding ``data``, flushed; removed again if writing fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
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
