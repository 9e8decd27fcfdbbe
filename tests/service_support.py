"""A throwaway publisher project in a temp folder, for build and service tests."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from publisher.core import config
from publisher import store
from publisher.core.clock import Clock, system_clock
from publisher.core.config import Config
from publisher.publish.pipeline import Pipeline

from .conftest import ROOT


def make_project(tmp: Path, *, samples: bool = True, **sections: dict[str, object]) -> Config:
    (tmp / "briefs").mkdir(exist_ok=True)
    if samples:
        for p in sorted((ROOT / "briefs").iterdir()):
            shutil.copy(p, tmp / "briefs" / p.name)
    lines = []
    defaults: dict[str, dict[str, object]] = {
        "site": {"base_url": "https://news.example/"},
        "schedule": {"scan_interval": 0.2, "quiet_period": 0.3, "digest_cron": "", "watch_events": True},
        "smtp": {},
    }
    for name, values in sections.items():
        defaults.setdefault(name, {}).update(values)
    for name, values in defaults.items():
        lines.append(f"[{name}]")
        for key, value in values.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, str):
                lines.append(f'{key} = "{value}"')
            else:
                lines.append(f"{key} = {value}")
    (tmp / "config.toml").write_text("\n".join(lines) + "\n")
    return config.load(tmp / "config.toml")


def publisher_for(cfg: Config, clock: Clock = system_clock) -> Publisher:
    return Pipeline(cfg, store.connect(cfg.store_url), clock=clock)


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    """Poll until ``predicate`` holds; a generous deadline, not a speed assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def brief_text(slug: str, title: str, *, summary: str = "A summary.", date: str = "2026-11-20", tags: str = "") -> str:
    front = f"---\ntags: [{tags}]\n---\n" if tags else ""
    return (
        f"{front}# {title}\n> Dek of {title}\n\n**Meta:** type: test · date: {date} · 1 take · 1 lens · 1 region\n\n"
        f"## Summary\n\n{summary}\n\n## Why it matters\n\nIt matters.\n\n## What to watch\n\n- Next steps.\n\n"
        "## Regional takes\n\n### Wire services\n- **Reuters** (United Kingdom, en) — A take.\n"
        "  > \"A quote.\"\n  Source: https://www.reuters.com/x\n\n"
        f"Canonical: https://news.example/n/{slug}\n"
    )
