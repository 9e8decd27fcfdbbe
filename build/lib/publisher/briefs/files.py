"""Brief files on disk: which names count as briefs, finding them, reading one."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..core.errors import BriefError
from .model import Brief
from .parse import SUFFIXES, parse_brief


def load_brief(path: str | Path, *, base_url: str | None = None) -> Brief:
    """Read and parse one file; unreadable files become BriefError too."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BriefError(str(path), None, f"unreadable: {exc.strerror or exc}") from exc
    return parse_brief(data, str(path), base_url=base_url)



def is_brief_name(name: str) -> bool:
    """A file the folder scan should read: .md/.txt, not hidden, not an editor temp file."""
    if name.startswith((".", "#", "~")) or name.endswith(("~", "#")):
        return False
    return name.lower().endswith(SUFFIXES)


def find_briefs(paths: Iterable[Path]) -> list[Path]:
    """Files named directly, plus brief files under folders (sorted, recursive)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file() and is_brief_name(q.name) and not any(part.startswith(".") for part in q.relative_to(p).parts)))
        else:
            out.append(p)
    return out