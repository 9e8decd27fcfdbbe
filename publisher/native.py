"""The hot modules compiled to C by mypyc, used only while they match the sources.

A build spends nearly all its CPU in the parser and the renderers, code made
of many small steps on strings that CPython interprets one at a time. mypyc
compiles these typed modules (:data:`MODULES`) to C extensions: the same
source, the same output, about 12 % less CPU to parse and render a brief.
``make native`` (run by ``make run`` and ``make test``) builds them into
``build/native/`` with a stamp of every source file it read.

At import, :mod:`publisher` calls :func:`install`: when the stamp matches the
sources (size and mtime, else the SHA-256) and this interpreter, an import
finder serves the listed modules from their extensions. Anything else (no
build, a source edited since, another Python, ``PUBLISHER_NATIVE=0``) leaves
plain Python, which is always correct: a stale extension is never loaded.

:mod:`publisher.nativebuild` builds them (``python -m publisher.nativebuild``).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.machinery import ExtensionFileLoader, ModuleSpec
from pathlib import Path
from types import ModuleType

# Where a worker's time goes (bench/README.md): parse, coverage view, page, email, text.
MODULES = (
    "publisher.briefs.files",
    "publisher.briefs.identity",
    "publisher.briefs.inline",
    "publisher.briefs.parse",
    "publisher.briefs.sections",
    "publisher.briefs.slugs",
    "publisher.core.memo",
    "publisher.render.coverage",
    "publisher.render.email",
    "publisher.render.escape",
    "publisher.render.mjml",
    "publisher.render.site",
    "publisher.render.skeleton",
    "publisher.render.story_html",
    "publisher.render.story_mjml",
    "publisher.render.story_text",
    "publisher.render.text",
)
GROUP = "publisher.compiled"  # mypyc's shared library: publisher/compiled__mypyc.*.so
PACKAGE = Path(__file__).resolve().parent
BUILD = PACKAGE.parent / "build" / "native"
STAMP = "stamp.json"
ENV = "PUBLISHER_NATIVE"  # "0": plain Python whatever is built


@dataclass(frozen=True)
class Status:
    active: bool
    reason: str  # why not, or what is loaded


def abi() -> str:
    return f"{sys.implementation.cache_tag} {importlib.machinery.EXTENSION_SUFFIXES[0]}"


def sources() -> list[Path]:
    # Every module of the package: mypyc compiles in what it knows of the
    # others (Final constants, class layouts), so a change anywhere counts.
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def record(path: Path) -> list[object]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, _digest(path)]


def check(build: Path = BUILD, *, honour_env: bool = True) -> Status:
    """Whether the extensions in ``build`` may be loaded by this process, and why not."""
    if honour_env and os.environ.get(ENV, "1") == "0":
        return Status(False, f"{ENV}=0")
    try:
        stamp = json.loads((build / STAMP).read_text("utf-8"))
    except FileNotFoundError:
        return Status(False, "not built (make native)")
    except (OSError, ValueError) as exc:
        return Status(False, f"unreadable stamp {build / STAMP}: {exc}")
    if stamp.get("abi") != abi():
        return Status(False, f"built for {stamp.get('abi')!r}, this is {abi()!r}")
    if tuple(stamp.get("modules", ())) != MODULES:
        return Status(False, "built for another list of modules")
    for rel, (size, mtime_ns, digest) in stamp.get("sources", {}).items():
        path = PACKAGE / rel
        try:
            st = path.stat()
        except OSError:
            return Status(False, f"stale: {rel} is gone")
        # Size and mtime as a .pyc checks them; a touched but equal file (a checkout) by its hash.
        if (st.st_size, st.st_mtime_ns) != (size, mtime_ns) and (st.st_size != size or _digest(path) != digest):
            return Status(False, f"stale: {rel} changed since the build")
    return Status(True, f"{len(MODULES)} modules compiled ({build})")


class _Finder:
    """Serves :data:`MODULES` (and mypyc's shared library) from their extensions in ``build``.

    A meta path finder by protocol (``find_spec``): importlib.abc would cost every start 8 ms."""

    def __init__(self, build: Path) -> None:
        names = (*MODULES, GROUP + "__mypyc")
        suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
        self.files = {name: build / (name.replace(".", "/") + suffix) for name in names}

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> ModuleSpec | None:
        file = self.files.get(fullname)
        if file is None:
            return None
        origin = str(file)
        spec = ModuleSpec(fullname, ExtensionFileLoader(fullname, origin), origin=origin)
        spec.has_location = True  # sets the module's __file__, as for any extension
        return spec


_status: Status | None = None


def install() -> Status:
    """Put the compiled modules first in line when they may be loaded (once per process)."""
    global _status
    if _status is None:
        _status = check()
        if _status.active:
            sys.meta_path.insert(0, _Finder(BUILD))
    return _status


def loaded() -> list[str]:
    """The modules of :data:`MODULES` imported so far from an extension."""
    return [name for name in MODULES if name in sys.modules and not (getattr(sys.modules[name], "__file__", "") or "").endswith(".py")]
