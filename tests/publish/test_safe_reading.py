"""Hostile files in the briefs folder: links out, FIFOs, a sparse giant; none is read, none stops the rest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from publisher import store
from publisher.briefs.files import read_brief_bytes
from publisher.core.errors import BriefError
from publisher.publish.pipeline import Pipeline
from tests.support.files import ROOT
from tests.support.folders import settle
from tests.support.project import brief_text, build_config
from tests.support.waiting import wait_for


def _put(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    settle(folder / name)
    return folder / name


def _link(link: Path, target: Path) -> None:
    link.symlink_to(target)
    os.utime(link, (1_600_000_000, 1_600_000_000), follow_symlinks=False)


@pytest.mark.parametrize("follow", [False, True])
def test_a_link_to_an_outside_file_is_never_published(tmp_path: Path, follow: bool) -> None:
    cfg = build_config(tmp_path, create=True, briefs={"follow_symlinks": follow})
    outside = _put(tmp_path / "elsewhere", "secret.md", brief_text("secret", "Secret"))
    _put(cfg.paths.briefs, "good.md", brief_text("good", "Good"))
    _link(cfg.paths.briefs / "leak.md", outside)
    _link(cfg.paths.briefs / "passwd.md", Path("/etc/passwd"))
    pub = Pipeline(cfg, store.connect(cfg.store_url))
    result = pub.sync()
    assert result.published == ["good"]
    assert not (cfg.paths.public / "issues" / "secret.html").exists()
    errors = dict(pub.status().errors)
    reason = "outside the briefs folder" if follow else "a symbolic link"
    assert reason in errors["leak.md"] and reason in errors["passwd.md"]
    assert b"secret" not in (cfg.paths.public / "feed.atom").read_bytes()


@pytest.mark.parametrize("follow", [False, True])
def test_a_link_inside_the_folder_is_published_only_when_allowed(tmp_path: Path, follow: bool) -> None:
    cfg = build_config(tmp_path, create=True, briefs={"follow_symlinks": follow})
    # A hidden folder is not scanned: its files publish only through the links.
    target = _put(cfg.paths.briefs / ".library", "target.md", brief_text("inside", "Inside"))
    _link(cfg.paths.briefs / "in.md", target)
    outside = _put(tmp_path / "elsewhere", "secret.md", brief_text("secret", "Secret"))
    _link(cfg.paths.briefs / ".library" / "hop.md", outside)
    _link(cfg.paths.briefs / "hop.md", cfg.paths.briefs / ".library" / "hop.md")
    pub = Pipeline(cfg, store.connect(cfg.store_url))
    assert pub.sync().published == (["inside"] if follow else [])
    errors = dict(pub.status().errors)
    # Resolved, not lexical: a link to a link that leaves the folder is refused.
    assert ("outside the briefs folder" if follow else "a symbolic link") in errors["hop.md"]
    assert ("in.md" in errors) is not follow


def test_a_fifo_never_blocks_the_scan(tmp_path: Path) -> None:
    cfg = build_config(tmp_path, create=True, briefs={"follow_symlinks": True})
    os.mkfifo(cfg.paths.briefs / "pipe.md")
    os.utime(cfg.paths.briefs / "pipe.md", (1_600_000_000, 1_600_000_000))
    _put(cfg.paths.briefs, "good.md", brief_text("good", "Good"))
    pub = Pipeline(cfg, store.connect(cfg.store_url))
    out: list[object] = []
    worker = threading.Thread(target=lambda: out.append(pub.sync()), daemon=True)
    worker.start()
    worker.join(timeout=60)  # a deadline for a hang, not a speed bound
    assert not worker.is_alive(), "the scan blocked on a FIFO"
    assert out and out[0].published == ["good"]  # type: ignore[attr-defined]
    assert "not a regular file" in dict(pub.status().errors)["pipe.md"]


def test_an_oversized_file_is_refused_by_its_size(tmp_path: Path) -> None:
    big = tmp_path / "big.md"
    big.write_bytes(b"# T\n" + b"x" * 100)
    with pytest.raises(BriefError, match=r"refused: 104 bytes is over briefs.max_bytes \(100\)"):
        read_brief_bytes(big, max_bytes=100)
    assert read_brief_bytes(big, max_bytes=104).startswith(b"# T")


_MEASURE = """
import json, sys
from pathlib import Path
from typing import Any
from publisher import store
from publisher.core import config
from publisher.publish.pipeline import Pipeline
root = Path(sys.argv[1])
cfg = config.from_mapping({"paths": {"briefs": "briefs", "public": "public", "state": "state", "templates": "none"}}, base=root)
cfg.paths.state.mkdir()
pub = Pipeline(cfg, store.connect(cfg.store_url))
result = pub.sync()
# VmHWM, the peak of this process's own memory map: ru_maxrss would also count
# the forking parent's pages from before exec (Linux keeps that high-water mark
# across exec), which late in a long test run is the test runner's size, not ours.
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"published": result.published, "errors": result.errors, "maxrss_kb": hwm}))
"""


@pytest.mark.slow
def test_a_2gb_sparse_brief_is_refused_without_being_read(tmp_path: Path) -> None:
    briefs = tmp_path / "briefs"
    _put(briefs, "good.md", brief_text("good", "Good"))
    giant = briefs / "giant.md"
    with giant.open("wb") as fh:
        fh.write(b"# Giant\n")
        fh.truncate(2 * 1024**3)  # sparse: 2 GB by size, almost nothing on disk
    settle(giant)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", _MEASURE, str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["published"] == ["good"]
    assert "giant.md: refused: 2147483648 bytes is over briefs.max_bytes" in report["errors"][0]
    # Peak RSS of the whole process (Python, SQLAlchemy, templates included).
    assert report["maxrss_kb"] < 200 * 1024, report


def test_a_folder_swapped_for_a_link_out_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "briefs"
    outside = _put(tmp_path / "elsewhere", "x.md", brief_text("x", "X"))
    root.mkdir()
    (root / "sub").symlink_to(outside.parent)
    with pytest.raises(BriefError, match="resolves outside the briefs folder"):
        read_brief_bytes(root / "sub" / "x.md", root=root)


def test_an_unreadable_file_is_retried_without_being_edited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from publisher.publish.retry import Retries

    cfg = build_config(tmp_path, create=True)
    _put(cfg.paths.briefs, "locked.md", brief_text("locked", "Locked"))
    real_open = os.open

    def denied(path: Any, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith("locked.md"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, *args, **kwargs)

    # An injected EACCES: as root (CI), chmod 000 would not stop the read.
    monkeypatch.setattr(os, "open", denied)
    pub = Pipeline(cfg, store.connect(cfg.store_url))
    pub.retries = Retries(0.01)
    result = pub.sync()
    assert result.published == [] and "unreadable: Permission denied" in result.errors[0]
    monkeypatch.setattr(os, "open", real_open)  # a chmod fixes it; the mtime does not move
    wait_for(lambda: pub.sync().published == ["locked"], what="the file read again")


def test_a_brief_in_a_real_subfolder_reads_and_dot_dot_out_is_refused(tmp_path: Path) -> None:
    # A folder that is the briefs folder or real folders under it is trusted without resolve();
    # anything else ('..', a link on the way) is resolved, and refused when it leaves the folder.
    root = tmp_path / "briefs"
    inside = _put(root / "a" / "b", "x.md", brief_text("x", "X"))
    outside = _put(tmp_path / "elsewhere", "y.md", brief_text("y", "Y"))
    assert read_brief_bytes(inside, root=root) == inside.read_bytes()
    assert read_brief_bytes(root / "a" / ".." / "a" / "b" / "x.md", root=root) == inside.read_bytes()
    with pytest.raises(BriefError, match="resolves outside the briefs folder"):
        read_brief_bytes(root / "a" / ".." / ".." / "elsewhere" / outside.name, root=root)
    (root / "a" / "out").symlink_to(outside.parent)
    with pytest.raises(BriefError, match="resolves outside the briefs folder"):
        read_brief_bytes(root / "a" / "out" / outside.name, root=root)
