"""Compiling :data:`publisher.native.MODULES` with mypyc into ``build/native/``, and its stamp.

Build-time only: mypyc (it comes with mypy) and setuptools, the "native"
extra, are imported here, never by a running publisher. ``make native`` runs
``python -m publisher.nativebuild build``, which does nothing while the
stamp matches the sources; ``status`` says what a process would load.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .native import BUILD, GROUP, MODULES, PACKAGE, STAMP, Status, abi, check, record, sources


@contextmanager
def _output_to(log: Path) -> Iterator[None]:
    """The build's chatter (mypy notes, a compiler line per module) into ``log``, and
    its last lines onto stderr if it fails: a file descriptor swap, so the compiler's too."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(log, "wb") as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    except BaseException:
        tail = log.read_text("utf-8", "replace").splitlines()[-30:] if log.exists() else []
        print("\n".join([*tail, f"(the whole output: {log})"]), file=sys.stderr)
        raise
    finally:
        os.close(saved[0])
        os.close(saved[1])


def build(out: Path = BUILD) -> Status:
    """Compile :data:`MODULES` into ``out`` unless its stamp says they are current."""
    now = check(out, honour_env=False)
    if now.active:
        return now
    from mypyc.build import mypycify
    from setuptools import Distribution

    root = PACKAGE.parent
    out.parent.mkdir(parents=True, exist_ok=True)
    files = sources()
    before = {str(p.relative_to(PACKAGE)): record(p) for p in files}
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        work = Path(tmp)
        here = os.getcwd()
        os.chdir(root)  # mypy names modules by their paths from here
        try:
            with _output_to(out.parent / "native.log"):
                paths = [name.replace(".", "/") + ".py" for name in MODULES]
                extensions = mypycify(paths, group_name=GROUP, target_dir=str(work / "c"), opt_level="3")
                dist = Distribution({"name": "publisher-native", "ext_modules": extensions})
                cmd: Any = dist.get_command_obj("build_ext")
                cmd.build_lib = str(work / "lib")
                cmd.build_temp = str(work / "obj")
                cmd.ensure_finalized()
                cmd.run()
        finally:
            os.chdir(here)
        after = {str(p.relative_to(PACKAGE)): record(p) for p in files}
        if [v[2] for v in before.values()] != [v[2] for v in after.values()]:
            raise RuntimeError("a source file changed while it was compiled; run the build again")
        stamp = {"abi": abi(), "modules": list(MODULES), "sources": after}
        (work / "lib" / STAMP).write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n", "utf-8")
        # Swapped whole: a process starting meanwhile loads the old build, the new one or
        # (between the two renames) none, never half of one; one running keeps what it mapped.
        old = work / "old"
        if out.exists():
            out.rename(old)
        (work / "lib").rename(out)
        shutil.rmtree(old, ignore_errors=True)
    return check(out, honour_env=False)


def main(argv: Sequence[str]) -> int:
    command = argv[0] if argv else "status"
    if command == "build":
        status = build()
    elif command == "status":
        status = check()
    else:
        print("usage: python -m publisher.nativebuild [build|status]", file=sys.stderr)
        return 2
    print(("compiled: " if status.active else "plain Python: ") + status.reason)
    return 0 if status.active or command == "status" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
