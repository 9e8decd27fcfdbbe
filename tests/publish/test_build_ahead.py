"""A build's tail: the feed entries and list items it shows are made by a worker while it writes the archive.

publish.headstart.start sets a kept worker on them (items_chunk, entries_chunk) once the
stories are recorded; the tail waits for them at its first miss. Who renders an entry
never changes what is written, and anything the workers could not make (a
file changed since it was recorded, a worker that died) the tail renders
itself from the store, as it does without them.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from publisher.core.clock import FixedClock
from publisher.core.config import Config
from publisher.publish import briefcache, headstart, pipeline

from tests.support.project import make_project, pipeline_for

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc)
ENTITIES = ["Alpha, Beta", "Beta", "Gamma, Alpha", "Alpha", "Delta", "Beta, Gamma"]


def _brief(n: int) -> str:
    date = dt.date(2026, 8, 1) + dt.timedelta(days=n)
    front = "---\ntags: [Energy]\n---\n" if n % 5 == 0 else ""
    return (
        f"{front}# Story {n}\n> Dek of story {n}\n\n**Meta:** type: test · date: {date} · 1 take · 1 lens · 1 region\n\n"
        f"## Summary\n\nSummary of story {n}.\n\n## Why it matters\n\nIt matters.\n\n## What to watch\n\n- Next steps.\n\n"
        "## Regional takes\n\n### Wire services\n- **Reuters** (United Kingdom, en) — A take.\n"
        "  > \"A quote.\"\n  Source: https://www.reuters.com/x\n\n"
        f"## Across the graph\n\n- Related: [[s-01]]\n- Entities: {ENTITIES[n % len(ENTITIES)]}\n\n---\n"
        f"Canonical: https://news.example/n/s-{n:02d}\n"
    )


def _project(tmp: Path) -> Config:
    tmp.mkdir(exist_ok=True)
    cfg = make_project(tmp, samples=False, feeds={"size": 10})
    for n in range(1, 41):  # 40 stories: more than the tail's head start needs (headstart.HEAD_START_STORIES)
        (cfg.paths.briefs / f"{n:02d}.md").write_text(_brief(n), encoding="utf-8")
    (cfg.paths.briefs / "broken.md").write_text("# No date\n\n## Summary\n\nText.\n", encoding="utf-8")
    return cfg


def _outputs(cfg: Config) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for folder, label in ((cfg.paths.public, "public"), (cfg.paths.state / "feed-entries", "entries"),
                          (cfg.paths.state / "site-items", "items")):
        out.update({f"{label}/{p.relative_to(folder)}": p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()})
    return out


def _parsed_by_the_tail(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Slugs whose stored brief this process parses: the build's tail (the workers are other processes)."""
    seen: list[str] = []
    original = briefcache.BriefCache.brief

    def counting(self: briefcache.BriefCache, conn: object, ref: object) -> object:
        seen.append(ref.slug)  # type: ignore[attr-defined]
        return original(self, conn, ref)  # type: ignore[arg-type]

    monkeypatch.setattr(briefcache.BriefCache, "brief", counting)
    return seen


def _die(refs: object) -> object:
    """A worker that is killed (by the kernel, say) while it makes the tail's entries."""
    os._exit(3)


def _build(cfg: Config, workers: int = 2) -> None:
    result = pipeline_for(cfg, FixedClock(NOW)).build_all(workers=workers)
    assert len(result.published) == 40 and len(result.errors) == 1


# The stories the tail shows (on a feed, the home page or a tag page) when it renders them all
# itself: the ten newest and each tag's ten newest.
SHOWN = 30


@pytest.fixture
def without_workers_ahead(tmp_path: Path) -> dict[str, bytes]:
    """What a build writes when its tail renders every entry and item itself."""
    cfg = _project(tmp_path / "alone")
    with pytest.MonkeyPatch.context() as m:
        m.setattr(headstart, "start", lambda pipeline, touched, pool: None)
        parsed = _parsed_by_the_tail(m)
        _build(cfg)
    assert len(set(parsed)) == SHOWN
    return _outputs(cfg)


def test_the_tail_parses_nothing_and_writes_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     without_workers_ahead: dict[str, bytes]) -> None:
    cfg = _project(tmp_path / "ahead")
    parsed = _parsed_by_the_tail(monkeypatch)
    _build(cfg)
    assert parsed == []
    assert _outputs(cfg) == without_workers_ahead


def test_a_file_changed_since_recording_is_left_to_the_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          without_workers_ahead: dict[str, bytes]) -> None:
    cfg = _project(tmp_path / "changed")
    start: Callable[..., object] = headstart.start

    def edit_then_start(self: pipeline.Pipeline, touched: set[str], pool: object) -> object:
        # After the stories are recorded, before the workers read them: the store keeps what the build saw.
        path = cfg.paths.briefs / "40.md"
        path.write_text(path.read_text().replace("Summary of story 40.", "Rewritten meanwhile."))
        return start(self, touched, pool)

    monkeypatch.setattr(headstart, "start", edit_then_start)
    parsed = _parsed_by_the_tail(monkeypatch)
    _build(cfg)
    assert set(parsed) == {"s-40"}  # from the store, as recorded
    assert _outputs(cfg) == without_workers_ahead


def test_a_worker_that_dies_costs_only_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                           without_workers_ahead: dict[str, bytes]) -> None:
    cfg = _project(tmp_path / "died")
    monkeypatch.setattr(headstart, "items_chunk", _die)
    parsed = _parsed_by_the_tail(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="publisher.publish.headstart"):
        _build(cfg)
    assert "list items made ahead were lost" in caplog.text and "feed entries made ahead were lost" in caplog.text
    assert len(set(parsed)) == SHOWN
    assert _outputs(cfg) == without_workers_ahead


def test_a_build_in_one_process_renders_in_its_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   without_workers_ahead: dict[str, bytes]) -> None:
    cfg = _project(tmp_path / "one")
    parsed = _parsed_by_the_tail(monkeypatch)
    _build(cfg, workers=1)
    assert len(set(parsed)) == SHOWN
    assert _outputs(cfg) == without_workers_ahead
