"""Atomic writes of the public folder: each way of staging (an unnamed O_TMPFILE file, a named temp)
and each order (compare first, link first) gives the same files, modes and mtimes."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from publisher.publish import outputs

MODES = ["anon-compare-first", "anon-link-first", "named-temp"]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = request.param
    if name.startswith("anon") and not outputs._anon_ok:
        pytest.skip("no O_TMPFILE here")
    monkeypatch.setattr(outputs, "_anon_ok", name.startswith("anon"))
    monkeypatch.setattr(outputs, "_expect_new", name == "anon-link-first")
    # Each write sets the order for the next: keep the mode under test for every call.
    real = outputs.write_all_atomic

    def pinned(items: Any) -> list[Path]:
        outputs._expect_new = name == "anon-link-first"
        return real(items)

    monkeypatch.setattr(outputs, "write_all_atomic", pinned)
    yield name


def _entries(folder: Path) -> set[str]:
    return set(os.listdir(folder))


def test_new_files_are_written_whole_with_mode_644_and_nothing_else(tmp_path: Path, mode: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outputs, "_UMASK", 0o077)  # read once per process: as if it started so
    old_umask = os.umask(0o077)  # the mode is 0644 whatever the umask
    try:
        written = outputs.write_all_atomic([(tmp_path / "a" / "x.html", b"page"), (tmp_path / "a" / "x.txt", b"text")])
    finally:
        os.umask(old_umask)
    assert written == [tmp_path / "a" / "x.html", tmp_path / "a" / "x.txt"]
    assert (tmp_path / "a" / "x.html").read_bytes() == b"page" and (tmp_path / "a" / "x.txt").read_bytes() == b"text"
    assert stat.S_IMODE((tmp_path / "a" / "x.html").stat().st_mode) == 0o644
    assert _entries(tmp_path / "a") == {"x.html", "x.txt"}  # no temp left, the missing folder made


def test_an_unchanged_file_keeps_its_inode_and_mtime(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "feed.atom"
    path.write_bytes(b"same")
    os.utime(path, (1_000_000, 1_000_000))
    before = path.stat()
    assert outputs.write_all_atomic([(path, b"same")]) == []
    after = path.stat()
    assert (after.st_ino, after.st_mtime) == (before.st_ino, before.st_mtime)
    assert _entries(tmp_path) == {"feed.atom"}


def test_a_changed_file_is_replaced_by_a_new_inode(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "feed.atom"
    path.write_bytes(b"old!")  # same size, other bytes: compared, not just sized
    old_ino = path.stat().st_ino
    reader = path.open("rb")  # a reader holding the old file keeps reading the old file whole
    assert outputs.write_all_atomic([(path, b"new!")]) == [path]
    assert path.read_bytes() == b"new!" and path.stat().st_ino != old_ino
    assert reader.read() == b"old!"
    reader.close()
    assert _entries(tmp_path) == {"feed.atom"}


def test_a_failure_while_staging_publishes_nothing_and_leaves_no_temp(tmp_path: Path, mode: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "x.txt").write_bytes(b"old text")
    real = outputs._stage

    def stage(path: Path, data: bytes) -> Any:
        if path.name == "x.txt":
            # The page is staged by now, and must not be visible.
            assert not (tmp_path / "x.html").exists()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data)

    monkeypatch.setattr(outputs, "_stage", stage)
    with pytest.raises(OSError, match="No space left"):
        outputs.write_all_atomic([(tmp_path / "x.html", b"new page"), (tmp_path / "x.txt", b"new text")])
    assert _entries(tmp_path) == {"x.txt"} and (tmp_path / "x.txt").read_bytes() == b"old text"


def test_a_failure_while_writing_the_data_leaves_no_temp(tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write

    def write(fd: int, data: Any) -> int:
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(outputs.os, "write", write)
    with pytest.raises(OSError):
        outputs.write_all_atomic([(tmp_path / "x.html", b"page")])
    monkeypatch.setattr(outputs.os, "write", real_write)
    assert _entries(tmp_path) == set()


def test_a_name_taken_between_the_compare_and_the_link_is_compared_again(tmp_path: Path, mode: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer creates the file after this one found it absent: its bytes are replaced
    (or left alone when they are the same), never an error."""
    path = tmp_path / "x.html"
    real = outputs._stage

    def stage(p: Path, data: bytes) -> Any:
        staged = real(p, data)
        p.write_bytes(b"someone else's" if data == b"mine" else data)
        return staged

    monkeypatch.setattr(outputs, "_stage", stage)
    assert outputs.write_all_atomic([(path, b"mine")]) == [path]
    assert path.read_bytes() == b"mine"
    path.unlink()
    assert outputs.write_all_atomic([(path, b"equal")]) == ([] if mode != "named-temp" else [path])
    assert path.read_bytes() == b"equal" and _entries(tmp_path) == {"x.html"}


def test_the_order_follows_what_the_last_write_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not outputs._anon_ok:
        pytest.skip("no O_TMPFILE here")
    monkeypatch.setattr(outputs, "_expect_new", False)
    outputs.write_all_atomic([(tmp_path / "a.html", b"a"), (tmp_path / "a.txt", b"a")])
    assert outputs._expect_new  # both were absent: link first next time
    (tmp_path / "b.html").write_bytes(b"old")
    assert outputs.write_all_atomic([(tmp_path / "b.html", b"new")]) == [tmp_path / "b.html"]
    assert not outputs._expect_new  # a name was taken: compare first next time
    assert (tmp_path / "b.html").read_bytes() == b"new"
    assert outputs.write_all_atomic([(tmp_path / "b.html", b"new")]) == []
    assert not outputs._expect_new


def test_without_o_tmpfile_support_it_falls_back_to_named_temps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not outputs._anon_ok:
        pytest.skip("no O_TMPFILE here")
    real_open = os.open

    def open_(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        if flags & outputs._ANON == outputs._ANON:
            raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
        return real_open(path, flags, mode, **kw)

    monkeypatch.setattr(outputs.os, "open", open_)
    monkeypatch.setattr(outputs, "_anon_ok", True)
    assert outputs.write_all_atomic([(tmp_path / "x.html", b"page")]) == [tmp_path / "x.html"]
    assert not outputs._anon_ok
    assert (tmp_path / "x.html").read_bytes() == b"page" and _entries(tmp_path) == {"x.html"}
