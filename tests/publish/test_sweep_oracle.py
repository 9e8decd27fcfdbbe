"""The sweep's changed-folder path (a dict comparison) against the way it was first written
(every known name added, then each one listed with the same inode dropped), kept here as the
oracle."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.publish import watch


def _sweep_oracle(folder: Path, tree: watch.Tree, known: list[str]) -> list[str] | None:
    """watch.sweep as it was before the dict comparison (the slice included)."""
    if not tree.ready:
        return None
    out: set[str] = set()
    for prefix, (ino, mtime, files) in list(tree.folders.items()):
        try:
            st_ = os.lstat(folder / prefix)
        except (FileNotFoundError, NotADirectoryError):
            st_ = None
        if st_ is not None and st_.st_ino == ino and st_.st_mtime_ns == mtime:
            continue
        del tree.folders[prefix]
        out.update(prefix + name for name in files)
        if st_ is None:
            continue
        stack = [prefix]
        while stack:
            current = stack.pop()
            try:
                entries = watch._list(folder / current, current, tree)
            except FileNotFoundError:
                continue
            except OSError:
                tree.ready = False
                return None
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if f"{current}{entry.name}/" not in tree.folders:
                        stack.append(f"{current}{entry.name}/")
                elif watch.is_watched(entry.name):
                    name = current + entry.name
                    if current != prefix or files.get(entry.name) != entry.inode():
                        out.add(name)
                    else:
                        out.discard(name)
    if known:
        step = -(-len(known) // watch.Tree.ROTATION)
        start = tree.cursor % len(known)
        out.update(known[start : start + step])
        tree.cursor = start + step
    return sorted(out)


NAME = st.sampled_from(["a.md", "b.md", "c.txt", "D.MD", "e.md~", ".f.md", "g.md.swp", "h.txt", "notes", "#i.md#"])
DIR = st.sampled_from(["", "sub/", "sub/deep/", "other/"])
OP = st.tuples(st.sampled_from(["create", "delete", "replace", "rewrite", "mkdir-named", "rmtree", "move-dir"]), DIR, NAME)


def _apply(root: Path, op: tuple[str, str, str]) -> None:
    kind, where, name = op
    folder = root / where
    target = folder / name
    if kind == "create":
        folder.mkdir(parents=True, exist_ok=True)
        if not target.is_dir():
            target.write_bytes(b"x")
    elif kind == "delete":
        if target.is_file():
            target.unlink()
    elif kind == "replace":  # a safe save: a new inode under the same name
        if target.is_file():
            tmp = folder / ".tmp-save"
            tmp.write_bytes(b"y")
            os.replace(tmp, target)
    elif kind == "rewrite":  # in place: same inode, the folder untouched
        if target.is_file():
            target.write_bytes(b"z")
    elif kind == "mkdir-named":  # a folder whose name looks like a brief's
        folder.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.mkdir()
    elif kind == "rmtree":
        if where and folder.is_dir():
            shutil.rmtree(folder)
    elif kind == "move-dir":
        if where and folder.is_dir() and not (root / "moved").exists():
            folder.rename(root / "moved")


def _age(root: Path) -> None:
    # Past Tree.RACY_NS, so a folder's mtime is trusted, without sleeping.
    old = time.time() - 10
    for dirpath, _dirs, _files in os.walk(root):
        os.utime(dirpath, (old, old))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(OP, max_size=6), min_size=1, max_size=4))
def test_the_sweep_names_what_the_oracle_names(rounds: list[list[tuple[str, str, str]]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for where in ("", "sub/", "sub/deep/"):  # every kind of operation finds files to act on
            for name in ("a.md", "b.md", "c.txt", "e.md~"):
                _apply(root, ("create", where, name))
        _age(root)
        ours, theirs = watch.Tree(), watch.Tree()
        known = sorted(watch.scan(root, tree=ours))
        watch.scan(root, tree=theirs)
        for ops in rounds:
            for op in ops:
                _apply(root, op)
            _age(root)
            assert watch.sweep(root, ours, known) == _sweep_oracle(root, theirs, known)
            assert ours.folders == theirs.folders
