"""Test projects: the one config builder, a project folder for CLI and service tests, brief text."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from publisher import store
from publisher.core import config
from publisher.core.clock import Clock, system_clock
from publisher.core.config import Config
from publisher.publish.pipeline import Pipeline

from .files import SAMPLES


def build_config(tmp: Path | None = None, *, create: bool = False, **sections: Mapping[str, Any]) -> Config:
    """The one config builder: defaults for tests, ``sections`` merged over them.

    With ``tmp`` the briefs, public and state folders live under it (made
    now with ``create``); without, the config only serves pure renderers. Templates come
    from an empty override folder unless a test names one, so a stray
    ./templates cannot change the output.
    """
    base = tmp or Path("/nonexistent-publisher-test")
    data: dict[str, dict[str, Any]] = {
        "paths": {"briefs": "briefs", "public": "public", "state": "state", "templates": "no-overrides"},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    cfg = config.from_mapping(data, base=base, source=str(base / "config.toml"))
    if tmp is not None and create:
        for folder in (cfg.paths.briefs, cfg.paths.public, cfg.paths.state):
            folder.mkdir(parents=True, exist_ok=True)
    return cfg


def make_project(tmp: Path, *, samples: bool = True, **sections: dict[str, object]) -> Config:
    """A project folder with a config.toml (for the CLI and the service), sample briefs copied in."""
    (tmp / "briefs").mkdir(exist_ok=True)
    if samples:
        for p in sorted(SAMPLES.iterdir()):
            shutil.copy(p, tmp / "briefs" / p.name)
    lines = []
    defaults: dict[str, dict[str, object]] = {
        "site": {"base_url": "https://news.example/"},
        "schedule": {"scan_interval": 0.2, "quiet_period": 0.3, "watch_events": True},
        "digests": {"daily": "", "weekly": ""},
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


def pipeline_for(cfg: Config, clock: Clock = system_clock) -> Pipeline:
    return Pipeline(cfg, store.connect(cfg.store_url), clock=clock)


def brief_text(slug: str, title: str, *, summary: str = "A summary.", date: str = "2026-11-20", tags: str = "") -> str:
    front = f"---\ntags: [{tags}]\n---\n" if tags else ""
    return (
        f"{front}# {title}\n> Dek of {title}\n\n**Meta:** type: test · date: {date} · 1 take · 1 lens · 1 region\n\n"
        f"## Summary\n\n{summary}\n\n## Why it matters\n\nIt matters.\n\n## What to watch\n\n- Next steps.\n\n"
        "## Regional takes\n\n### Wire services\n- **Reuters** (United Kingdom, en) — A take.\n"
        "  > \"A quote.\"\n  Source: https://www.reuters.com/x\n\n"
        f"Canonical: https://news.example/n/{slug}\n"
    )
