"""A digest of the code that shapes kept outputs (feed entry parts, site items, page inputs).

Those caches outlive the process: without this, an upgrade that changes how
a brief is parsed or rendered would keep serving the old bytes until a full
build, since the package version does not move between development builds.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from .. import __version__

PACKAGE = Path(__file__).resolve().parent.parent
SHAPING = ("briefs", "render")  # the rooms whose code decides what a kept entry, item or page holds


def code_digest(root: Path = PACKAGE) -> str:
    return _digest(root.resolve())


@functools.cache
def _digest(root: Path) -> str:
    digest = hashlib.sha256(__version__.encode())
    for room in SHAPING:
        for path in sorted((root / room).glob("*.py")):
            digest.update(f"{room}/{path.name}".encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()
