"""The safety-net sweep: it looks at few files when the folder is idle, and still finds every kind of change."""

from __future__ import annotations

import os
import time
from pathlib import Path

from publisher.publish import watch
from publisher.publish.pipeline import Pipeline
from publisher.store import connect

from tests.support.folders import brief, make_cfg, put

N = 40


def _aged(path: Path) -> None:
    # Past the quiet period, and past Tree.RACY_NS for folders, without sleeping.
    old = time.time() - 10
    os.utime(path, (old, old))


def _pipeline(tmp_path: Path) -> tuple[Pipeline, Path]:
    cfg = make_cfg(tmp_path)
    for i in range(N):
        put(cfg.paths.briefs / ("sub" if i % 2 else ""), f"story-{i}.txt", brief(i))
    for folder in (cfg.paths.briefs / "sub", cfg.paths.briefs):
        _aged(folder)
    pipeline = Pipeline(cfg, connect(cfg.store_url))
    assert len(pipeline.sync().published) == N  # a full scan: the tree is primed
    return pipeline, cfg.paths.briefs


def test_an_idle_sweep_looks_at_a_slice_only(tmp_path: Path) -> None:
    pipeline, folder = _pipeline(tmp_path)
    looked: list[int] = []
    for _ in range(watch.Tree.ROTATION):
        paths = watch.sweep(folder, pipeline.tree, list(pipeline.load_index()))
        assert paths is not None
        looked.append(len(paths))
        assert not pipeline.sync(paths).changed
    assert max(looked) <= -(-N // watch.Tree.ROTATION)


def test_a_sweep_finds_new_gone_replaced_and_moved_files(tmp_path: Path) -> None:
    pipeline, folder = _pipeline(tmp_path)
    put(folder, "story-100.txt", brief(100))  # new
    (folder / "story-0.txt").unlink()  # gone
    # A safe save: a new file renamed over the old one (same size): a new inode under the same name.
    put(folder, "tmp-2", brief(2).replace(b"Story number", b"Story Number"))
    os.replace(folder / "tmp-2", folder / "story-2.txt")
    (folder / "deep" / "er").mkdir(parents=True)
    put(folder / "deep" / "er", "story-101.txt", brief(101))  # in a folder new to the tree
    os.rename(folder / "sub", folder / "moved")  # a whole folder moved
    for f in (folder / "deep" / "er", folder / "deep", folder / "moved", folder):
        _aged(f)
    paths = watch.sweep(folder, pipeline.tree, list(pipeline.load_index()))
    assert paths is not None
    # The root folder changed, yet only its new, gone and replaced names are looked at (plus the slice).
    root = [p for p in paths if "/" not in p]
    assert {"story-100.txt", "story-0.txt", "story-2.txt"} <= set(root) and len(root) <= 3 + -(-N // watch.Tree.ROTATION)
    result = pipeline.sync(paths)
    moved = {f"story-{i}" for i in range(1, N, 2)}  # the same stories at new paths: recorded again
    assert set(result.published) == {"story-100", "story-101", "story-2"} | moved
    assert result.removed == ["story-0"]
    assert not any(p.startswith("sub/") for p in pipeline.load_index())
    assert not pipeline.sweep().changed
    assert not pipeline.sync().changed  # a full scan finds nothing the sweep missed


def test_an_edit_in_place_no_event_saw_is_found_within_one_rotation(tmp_path: Path) -> None:
    pipeline, folder = _pipeline(tmp_path)
    target = folder / "story-4.txt"
    with open(target, "r+b") as f:  # same inode, the folder untouched
        f.write(b"---\nslug: story-4\n---\n# Story NUMBER")
    _aged(target)
    found = [pipeline.sweep().published for _ in range(watch.Tree.ROTATION)]
    assert sum(found, []) == ["story-4"]


def test_a_folder_it_cannot_list_means_a_full_scan(tmp_path: Path) -> None:
    pipeline, folder = _pipeline(tmp_path)
    assert watch.sweep(folder, watch.Tree(), []) is None  # never scanned
    pipeline.tree.ready = False
    assert watch.sweep(folder, pipeline.tree, []) is None
