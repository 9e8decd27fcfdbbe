"""Where templates are found: the user's override folder first, then ours.

Datasette-style: a user copies one template into ``paths.templates`` and
changes it; every other template still comes from the built-in folder.
"""

from __future__ import annotations

import functools
from pathlib import Path

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"


@functools.lru_cache(maxsize=8)
def search_path(user: Path) -> tuple[str, ...]:
    """The user's override folder (if it exists) before the built-in one."""
    dirs = []
    if user.is_dir() and user.resolve() != TEMPLATES_DIR:
        dirs.append(str(user.resolve()))
    dirs.append(str(TEMPLATES_DIR))
    return tuple(dirs)
