"""publish.heads.FirstPass: a full build's first pass, begun before the pipeline is imported.

Its workers are forked when it is made, so they read the briefs' heads
while the caller does other work (``publisher build`` imports the
pipeline's modules meanwhile); the titles are the same as read alone, and
a pass given up leaves no process behind.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from publisher.cli import main
from publisher.core.clock import FixedClock
from publisher.core.config import Config
from publisher.publish.heads import FirstPass

from tests.support.project import brief_text, make_project, pipeline_for

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc)


def _project(tmp: Path) -> Config:
    tmp.mkdir(exist_ok=True)
    cfg = make_project(tmp, samples=False, schedule={"quiet_period": 0.0})
    for n in range(30):
        (cfg.paths.briefs / f"{n:02d}.md").write_text(brief_text(f"story-{n:02d}", f"Story {n}"), encoding="utf-8")
    (cfg.paths.briefs / "30.md").write_text(brief_text("story-00", "A second story 00"), encoding="utf-8")  # the first file keeps it
    (cfg.paths.briefs / "draft.md").write_text("---\nstatus: draft\n---\n" + brief_text("story-d", "Draft"), encoding="utf-8")
    return cfg


def _children() -> set[int]:
    with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as fh:
        return {int(pid) for pid in fh.read().split()}


def test_the_workers_start_when_it_is_made_and_read_what_one_process_reads(tmp_path: Path) -> None:
    cfg = _project(tmp_path / "p")
    before = _children()
    first = FirstPass(cfg, 2)
    try:
        assert len(_children() - before) == 2  # forked already: reading while the caller imports
        titles = first.titles()
    finally:
        first.close()
    alone = FirstPass(cfg, 1)
    assert titles == alone.titles()
    assert titles["story-00"] == "Story 0" and "story-d" not in titles and len(titles) == 30
    assert _children() == before  # let go once the titles are in


def test_a_pass_given_up_leaves_no_worker(tmp_path: Path) -> None:
    cfg = _project(tmp_path / "p")
    before = _children()
    first = FirstPass(cfg, 2)
    first.close()
    assert _children() == before


def test_a_build_given_its_first_pass_writes_what_a_build_without_one_does(tmp_path: Path) -> None:
    outs = []
    for name in ("given", "own"):
        cfg = _project(tmp_path / name)
        pipeline = pipeline_for(cfg, FixedClock(NOW))
        result = pipeline.build_all(workers=2, first=FirstPass(cfg, 2) if name == "given" else None)
        assert len(result.published) == 31 and len(result.errors) == 1  # the draft is recorded too
        outs.append({str(p.relative_to(cfg.paths.public)): p.read_bytes() for p in sorted(cfg.paths.public.rglob("*")) if p.is_file()})
    given, own = outs
    assert given == own


def test_publisher_build_reads_the_heads_while_it_imports_the_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from publisher.publish import heads

    cfg = _project(tmp_path / "p")
    made: list[str] = []

    class Spy(FirstPass):
        def __init__(self, cfg: Config, n_workers: int) -> None:
            made.append("made, workers forked")
            super().__init__(cfg, n_workers)

        def titles(self) -> dict[str, str]:
            made.append("titles asked")
            return super().titles()

    monkeypatch.setattr(heads, "FirstPass", Spy)
    result = CliRunner().invoke(main, ["build", "--config", str(cfg.source)])
    assert result.exit_code == 1, result.output  # one file rejected (30.md claims story-00)
    assert "31 published, 1 rejected" in result.output
    assert made == ["made, workers forked", "titles asked"]  # the build used the pass the command began


def test_reading_ahead_opens_no_fifo_link_or_oversized_file_and_never_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from publisher.publish import heads, watch

    (tmp_path / "p").mkdir()
    cfg = make_project(tmp_path / "p", samples=False, briefs={"max_bytes": 1000})
    folder = cfg.paths.briefs
    (folder / "good.md").write_text(brief_text("good", "Good"), encoding="utf-8")
    os.mkfifo(folder / "pipe.md")  # no writer: a blocking open would hang here
    outside = tmp_path / "outside.md"
    outside.write_text("# Outside\n", encoding="utf-8")
    (folder / "link.md").symlink_to(outside)
    (folder / "dangling.md").symlink_to(tmp_path / "missing.md")
    listed = [(name, watch.Stat(0, 10)) for name in ("good.md", "pipe.md", "link.md", "dangling.md", "gone.md")]
    listed.append(("big.md", watch.Stat(0, 5000)))  # over max_bytes: not asked for
    opened: dict[str, bool] = {}  # name → whether the open succeeded
    real_open = os.open

    def spy(path: str, flags: int, *args: int) -> int:
        name = os.path.basename(path)
        assert flags & os.O_NOFOLLOW and flags & os.O_NONBLOCK
        try:
            fd = real_open(path, flags, *args)
        except OSError:
            opened[name] = False
            raise
        opened[name] = True
        return fd

    monkeypatch.setattr(os, "open", spy)
    done = threading.Event()
    threading.Thread(target=lambda: (heads.read_ahead(cfg, listed), done.set()), daemon=True).start()
    assert done.wait(60), "reading ahead blocked on a FIFO or raised"  # a deadline for a hang, not a speed bound
    # The links and the missing file fail to open, without a word: the build's reads report them.
    assert opened == {"good.md": True, "pipe.md": True, "link.md": False, "dangling.md": False, "gone.md": False}
