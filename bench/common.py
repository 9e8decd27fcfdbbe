"""Helpers every benchmark script shares: ports, process trees, a run lock."""

from __future__ import annotations

import fcntl
import os
import socket
import sys
from pathlib import Path


def free_port() -> int:
    """A free TCP port on loopback (benchmarks only ever talk to 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, from /proc (forked pool workers included)."""
    pids, stack = [], [pid]
    while stack:
        p = stack.pop()
        pids.append(p)
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    stack += [int(x) for x in f.read().split()]
            except OSError:
                continue
    return pids


def pss_bytes(pid: int) -> int:
    """Proportional set size: shared pages are split between the processes sharing them."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def exclusive(lock_path: Path) -> object:
    """Hold a lock on ``lock_path`` for the life of the process: two runs would share one scratch folder."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = lock_path.open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(f"another run of this benchmark holds {lock_path}; wait for it to finish")
    return handle


def write_config(out: Path, briefs: Path, *, extra: str = "") -> Path:
    """``out/config.toml`` for a bench run over ``briefs``: public/ and state/ under ``out``, no digests, ``extra`` appended."""
    root = Path(__file__).resolve().parent.parent
    out.mkdir(parents=True, exist_ok=True)
    cfg = out / "config.toml"
    cfg.write_text(
        f"""\
[site]
base_url = "https://briefs.example.org/"

[paths]
briefs = "{briefs}"
public = "{out / 'public'}"
state = "{out / 'state'}"
templates = "{root / 'templates'}"

[digests]
daily = ""
weekly = ""
{extra}""",
        encoding="utf-8",
    )
    return cfg


def ensure_corpus(base: Path, n: int, seed: int) -> bool:
    """``base/briefs``: ``n`` corpus briefs from ``seed``, kept across runs by a stamp; True if (re)written."""
    import json
    import shutil

    import corpus  # bench/corpus.py, beside this file

    stamp = base / "corpus.json"
    want = {"n": n, "seed": seed, "version": 2}
    if stamp.exists() and json.loads(stamp.read_text()) == want:
        return False
    shutil.rmtree(base, ignore_errors=True)
    corpus.write_briefs(base / "briefs", seed, n)
    stamp.write_text(json.dumps(want))
    return True
