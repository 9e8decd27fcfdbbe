"""`publisher build` and the incremental pipeline: determinism, atomicity, updated, ids."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import feedparser
import pytest
from click.testing import CliRunner
from lxml import etree  # type: ignore[import-untyped]

from publisher.cli import main
from publisher.core.clock import FixedClock
from publisher.publish import pipeline as pipeline_mod
from publisher.publish import reading, related, watch, workers

from tests.support.project import brief_text, make_project, pipeline_for


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_build_twice_is_byte_identical_and_untouched(tmp_path: Path) -> None:
    cfg = make_project(tmp_path)
    clock = FixedClock(dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc))
    first = pipeline_for(cfg, clock).build_all()
    assert first.errors == [] and len(first.published) == 6
    before = _snapshot(cfg.paths.public)
    assert {"feed.atom", "feed.rss", "feed.json"} <= set(before)
    assert "issues/india-upi-credit-lines.html" not in before  # a draft
    clock.advance(3600)
    second = pipeline_for(cfg, clock).build_all()
    assert second.written == []
    assert _snapshot(cfg.paths.public) == before


def test_fresh_store_gives_identical_bytes(tmp_path: Path) -> None:
    # Same briefs, same clock, separate stores: byte-identical outputs.
    outs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        cfg = make_project(tmp_path / name)
        clock = FixedClock(dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc))
        pipeline_for(cfg, clock).build_all()
        outs.append({k: v[0] for k, v in _snapshot(cfg.paths.public).items()})
    assert outs[0] == outs[1]


def test_edit_moves_only_that_entrys_updated(tmp_path: Path) -> None:
    cfg = make_project(tmp_path, schedule={"quiet_period": 0.0})
    clock = FixedClock(dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc))
    pub = pipeline_for(cfg, clock)
    pub.build_all()
    before = feedparser.parse((cfg.paths.public / "feed.atom").read_bytes())
    clock.advance(600)
    path = cfg.paths.briefs / "tsmc-arizona-n2-yields.md"
    path.write_text(path.read_text().replace("three months early", "three months early, it said"))
    result = pub.sync()
    assert result.published == ["tsmc-arizona-n2-yields"]
    after = feedparser.parse((cfg.paths.public / "feed.atom").read_bytes())
    assert before.bozo == 0 and after.bozo == 0
    old = {e.id: e for e in before.entries}
    new = {e.id: e for e in after.entries}
    assert set(old) == set(new)  # every id stays
    moved = [i for i in new if new[i].updated != old[i].updated]
    assert len(moved) == 1 and "tsmc-arizona-n2-yields" in new[moved[0]].link
    assert new[moved[0]].updated_parsed[:5] == (2026, 11, 28, 12, 10)
    assert all(new[i].published == old[i].published for i in new)


def test_rename_keeps_id_and_updated(tmp_path: Path) -> None:
    cfg = make_project(tmp_path, schedule={"quiet_period": 0.0})
    clock = FixedClock(dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc))
    pub = pipeline_for(cfg, clock)
    pub.build_all()
    before = (cfg.paths.public / "feed.atom").read_bytes()
    clock.advance(600)
    (cfg.paths.briefs / "tsmc-arizona-n2-yields.md").rename(cfg.paths.briefs / "renamed.md")
    result = pub.sync()
    assert result.removed == [] and result.errors == []
    assert (cfg.paths.public / "feed.atom").read_bytes() == before


def test_broken_brief_keeps_last_good_and_others_publish(tmp_path: Path) -> None:
    cfg = make_project(tmp_path, schedule={"quiet_period": 0.0})
    pub = pipeline_for(cfg)
    pub.build_all()
    path = cfg.paths.briefs / "tsmc-arizona-n2-yields.md"
    path.write_bytes(b"---\ntitle: [broken\n---\n")
    (cfg.paths.briefs / "fresh.md").write_text(brief_text("fresh", "A fresh story"))
    result = pub.sync()
    assert result.published == ["fresh"]
    assert len(result.errors) == 1 and "tsmc-arizona-n2-yields.md:3: bad front matter YAML" in result.errors[0]
    feed = feedparser.parse((cfg.paths.public / "feed.atom").read_bytes())
    links = [e.link for e in feed.entries]
    assert any("tsmc-arizona-n2-yields" in link for link in links)  # last good version stays
    assert any("fresh" in link for link in links)
    st = pub.status()
    assert st.errors and "bad front matter YAML" in st.errors[0][1]


def test_deleted_brief_leaves_the_feeds(tmp_path: Path) -> None:
    cfg = make_project(tmp_path, schedule={"quiet_period": 0.0})
    pub = pipeline_for(cfg)
    pub.build_all()
    (cfg.paths.briefs / "tsmc-arizona-n2-yields.md").unlink()
    result = pub.sync()
    assert result.removed == ["tsmc-arizona-n2-yields"]
    feed = feedparser.parse((cfg.paths.public / "feed.atom").read_bytes())
    assert not any("tsmc-arizona-n2-yields" in e.link for e in feed.entries)
    assert not (cfg.paths.public / "issues" / "tsmc-arizona-n2-yields.html").exists()
    assert not (cfg.paths.public / "tags" / "tsmc").exists() or not any((cfg.paths.public / "tags" / "tsmc").iterdir())


def test_duplicate_slug_is_rejected_with_both_paths(tmp_path: Path) -> None:
    cfg = make_project(tmp_path, schedule={"quiet_period": 0.0})
    pub = pipeline_for(cfg)
    pub.build_all()
    (cfg.paths.briefs / "copy.md").write_bytes((cfg.paths.briefs / "tsmc-arizona-n2-yields.md").read_bytes())
    result = pub.sync()
    assert len(result.errors) == 1 and "already used by tsmc-arizona-n2-yields.md" in result.errors[0]


def test_build_cli_exit_codes(tmp_path: Path) -> None:
    cfg = make_project(tmp_path)
    runner = CliRunner()
    import gc

    try:
        ok = runner.invoke(main, ["build", "--config", str(tmp_path / "config.toml")])
        # About to exit, the command freezes its objects so the interpreter's last collections skip them.
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    assert ok.exit_code == 0, ok.output
    (cfg.paths.briefs / "zz-broken.md").write_bytes(b"")
    out = tmp_path / "elsewhere"
    bad = runner.invoke(main, ["build", "--config", str(tmp_path / "config.toml"), "--out", str(out)])
    assert bad.exit_code == 1
    assert "zz-broken.md:1: empty file" in bad.output
    assert (out / "feed.atom").exists() and (out / "issues" / "tsmc-arizona-n2-yields.html").exists()
    usage = runner.invoke(main, ["build", "--config", str(tmp_path / "config.toml"), "--briefs", str(tmp_path / "nope")])
    assert usage.exit_code == 2


def test_archive_pages_are_written_by_the_pipeline(tmp_path: Path) -> None:
    cfg = make_project(tmp_path, samples=False, feeds={"size": 2, "archive": True, "archive_page_size": 2},
                       schedule={"quiet_period": 0.0})
    for n in range(7):
        (cfg.paths.briefs / f"s{n}.md").write_text(brief_text(f"s{n}", f"Story {n}", date=f"2026-11-{10 + n}"))
    pub = pipeline_for(cfg)
    pub.build_all()
    public = cfg.paths.public
    assert (public / "archive" / "1.atom").exists() and (public / "archive" / "2.atom").exists()
    assert not (public / "archive" / "3.atom").exists()  # only full pages are published
    seen = []
    for name in ("feed.atom", "archive/1.atom", "archive/2.atom"):
        seen += [e.link.rsplit("/", 1)[-1] for e in feedparser.parse((public / name).read_bytes()).entries]
    assert sorted(seen) == sorted(f"s{n}" for n in range(7))  # every story in exactly one document
    (cfg.paths.briefs / "s7.md").write_text(brief_text("s7", "Story 7", date="2026-11-20"))
    pub.sync()
    assert (public / "archive" / "3.atom").exists()


def _related_project(root: Path) -> Path:
    cfg = make_project(root, schedule={"quiet_period": 0.0})
    briefs = cfg.paths.briefs
    # b names a, which exists; c names only a story that does not.
    (briefs / "a.md").write_text(brief_text("story-a", "Story A"))
    (briefs / "b.md").write_text(brief_text("story-b", "Story B").replace("Canonical:", "## Across the graph\n- Related: [[story-a]], [[nowhere]]\n\nCanonical:"))
    (briefs / "c.md").write_text(brief_text("story-c", "Story C").replace("Canonical:", "## Across the graph\n- Related: [[nowhere]]\n\nCanonical:"))
    return cfg.paths.public


@pytest.mark.parametrize("pooled", [0, related.POOLED_PAGES], ids=["pages-again-in-workers", "pages-again-in-parent"])
def test_a_parallel_build_gives_the_bytes_of_file_by_file_syncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pooled: int) -> None:
    # Workers render story pages before any title is known; the pages (and
    # texts) naming an existing story are rendered again once it is (by the
    # workers, or by the parent when only a few are). Either way the result
    # must be what publishing the files one sync at a time gives.
    monkeypatch.setattr(related, "POOLED_PAGES", pooled)
    clock = FixedClock(dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc))
    outs = []
    for name, how in (("built", "build"), ("synced", "sync")):
        (tmp_path / name).mkdir()
        cfg = make_project(tmp_path / name, schedule={"quiet_period": 0.0})
        _related_project(tmp_path / name)
        pipeline = pipeline_for(cfg, clock)
        result = pipeline.build_all(workers=2) if how == "build" else pipeline.sync()
        assert result.errors == []
        # Every file the build wrote is counted (`publisher build` reports it), the workers' pages too.
        assert {"issues/story-a.html", "issues/story-a.txt", "issues/story-c.html", "feed.atom"} <= set(result.written)
        outs.append({k: v[0] for k, v in _snapshot(cfg.paths.public).items()})
    built, synced = outs
    assert sorted(built) == sorted(synced)
    assert b">Story A</a>" in built["issues/story-b.html"] and b"Related stories" not in built["issues/story-c.html"]
    # The text names it too (the email's "Related:" line), so it is rendered again with the page.
    assert b"Related: Story A [" in built["issues/story-b.txt"] and b"Related:" not in built["issues/story-c.txt"]
    assert {k for k in built if built[k] != synced[k]} == set()


def _related(text: str, *slugs: str) -> str:
    return text.replace("Canonical:", "## Across the graph\n- Related: " + ", ".join(f"[[{s}]]" for s in slugs) + "\n\nCanonical:")


def test_titles_known_ahead_but_not_published_are_put_right(tmp_path: Path) -> None:
    # The build learns titles from the briefs' heads before any page is
    # rendered. A head can name a story the store never publishes (its body
    # fails to parse, it is a draft) or one a second file claims: the pages
    # naming those must still equal what one sync at a time gives.
    clock = FixedClock(dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc))
    outs, errors = [], []
    for name, how in (("built", "build"), ("synced", "sync")):
        (tmp_path / name).mkdir()
        cfg = make_project(tmp_path / name, schedule={"quiet_period": 0.0})
        briefs = cfg.paths.briefs
        (briefs / "a.md").write_text(brief_text("story-a", "Story A"))
        # Its head names it, but it has no summary: rejected by the full parse.
        (briefs / "broken.md").write_text(brief_text("story-broken", "Broken story").replace("## Summary\n\nA summary.\n\n", ""))
        (briefs / "draft.md").write_text("---\nstatus: draft\n---\n" + brief_text("story-draft", "Draft story"))
        # Two files claim one slug: the first in path order keeps it.
        (briefs / "d1.md").write_text(brief_text("story-d", "First D"))
        (briefs / "d2.md").write_text(brief_text("story-d", "Second D"))
        # A draft keeps its slug from a later published file: no page at all.
        (briefs / "e1.md").write_text("---\nstatus: draft\n---\n" + brief_text("story-e", "Draft E"))
        (briefs / "e2.md").write_text(brief_text("story-e", "Published E"))
        (briefs / "z.md").write_text(_related(brief_text("story-z", "Story Z"), "story-a", "story-broken", "story-draft", "story-d"))
        pipeline = pipeline_for(cfg, clock)
        result = pipeline.build_all(workers=2) if how == "build" else pipeline.sync()
        errors.append(sorted(e.split(":")[0].rsplit("/", 1)[-1] for e in result.errors))
        outs.append({k: v[0] for k, v in _snapshot(cfg.paths.public).items()})
    built, synced = outs
    assert errors[0] == errors[1] == ["broken.md", "d2.md", "e2.md"]
    assert "issues/story-e.html" not in built and "issues/story-draft.html" not in built
    page = built["issues/story-z.html"]
    assert b">Story A</a>" in page and b">First D</a>" in page
    assert b"Broken story" not in page and b"Draft story" not in page and b"Second D" not in page
    assert sorted(built) == sorted(synced)
    assert {k for k in built if built[k] != synced[k]} == set()


def test_a_build_renders_each_page_once_when_the_titles_are_known_ahead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_project(tmp_path, schedule={"quiet_period": 0.0})
    (cfg.paths.briefs / "a.md").write_text(brief_text("story-a", "Story A"))
    (cfg.paths.briefs / "b.md").write_text(_related(brief_text("story-b", "Story B"), "story-a", "nowhere"))
    again: list[object] = []
    original = related.write_pages_again

    def spy(cfg: object, jobs: list[object], *args: object) -> None:
        again.extend(jobs)
        original(cfg, jobs, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(related, "write_pages_again", spy)
    pipeline_for(cfg, FixedClock(dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc))).build_all(workers=1)
    assert again == []
    assert b">Story A</a>" in (cfg.paths.public / "issues" / "story-b.html").read_bytes()


def test_a_file_changed_since_the_build_read_it_is_left_to_the_parent(tmp_path: Path) -> None:
    from publisher.publish import reading
    from publisher.publish.watch import Stat

    cfg = make_project(tmp_path, schedule={"quiet_period": 0.0})
    (cfg.paths.briefs / "a.md").write_text(brief_text("story-a", "Story A"))
    workers.init_worker(cfg)
    fresh = reading.read_and_parse(cfg, "a.md", Stat(0, 0))[0].sha256
    jobs = [reading.PageJob("a.md", fresh, {"x": "X"}), reading.PageJob("a.md", "0" * 64, {"x": "X"})]
    (current, written), (stale, none) = reading.page_chunk(jobs)
    assert current is jobs[0] and written == ["issues/story-a.html", "issues/story-a.txt"]
    assert stale is jobs[1] and none is None


_THRESHOLDS = "gc-thresholds.txt"


def _build_chunk_noting_gc(paths: Sequence[tuple[str, watch.Stat]]) -> list[reading.Parsed]:
    import gc
    import os

    cfg = workers.config()
    with open(cfg.paths.state / _THRESHOLDS, "a", encoding="ascii") as fh:
        fh.write(f"{os.getpid()} {gc.get_threshold()[0]}\n")
    return reading.build_chunk(paths)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_build_collects_garbage_less_often_and_restores_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int) -> None:
    # Briefs allocate millions of short-lived objects: at CPython's default
    # gen-0 threshold the collector cost 2-3 % of a build's CPU. The build
    # raises it (in the parent and in each pool worker) and gives the
    # process its own setting back afterwards.
    import gc
    import os

    cfg = make_project(tmp_path, schedule={"quiet_period": 0.0})
    for n in range(6):
        (cfg.paths.briefs / f"b{n}.md").write_text(brief_text(f"story-{n}", f"Story {n}"))
    monkeypatch.setattr(pipeline_mod, "build_chunk", _build_chunk_noting_gc)
    before = gc.get_threshold()
    gc.set_threshold(900, *before[1:])
    try:
        result = pipeline_for(cfg).build_all(workers=workers)
        assert gc.get_threshold()[0] == 900
    finally:
        gc.set_threshold(*before)
    assert result.errors == [] and len(result.published) >= 6
    noted = [line.split() for line in (cfg.paths.state / _THRESHOLDS).read_text().splitlines()]
    assert noted and all(int(threshold) >= 20_000 for _pid, threshold in noted)
    assert any(int(pid) != os.getpid() for pid, _ in noted) == (workers > 1)
