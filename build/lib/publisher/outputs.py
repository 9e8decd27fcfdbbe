"""Writing the public folder: atomic, and silent when nothing changed.

Feed readers poll these files. A reader must never see half a file (so we
write a temp file in the same folder and rename it over the old one), and an
unchanged file must keep its mtime (so ETag/Last-Modified stay stable and
readers get 304s).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` atomically; False (file untouched) when unchanged."""
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def remove(path: Path) -> bool:
    """Remove a published file; True when something was removed."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
