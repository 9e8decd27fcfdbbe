"""A briefs folder under test: numbered copies of the reference brief, written and aged past the quiet period."""

from __future__ import annotations

import os
import time
from pathlib import Path

import sqlalchemy as sa

from publisher.core.config import Config
from publisher.store import schema

from .files import REFERENCE
from .project import build_config

REF = REFERENCE.read_bytes()


def brief(n: int, extra: str = "", fm: str = "") -> bytes:
    head = f"---\nslug: story-{n}\n{fm}---\n# Story number {n}: Anthropic accuses Alibaba{extra}\n".encode()
    return head + REF.split(b"\n", 1)[1]


def make_cfg(tmp_path: Path, **schedule: object) -> Config:
    """A pipeline config over folders under ``tmp_path``, with a short quiet period."""
    return build_config(tmp_path, schedule={"quiet_period": 0.05, **schedule})


def settle(path: Path) -> None:
    # Age the file past the quiet period without sleeping.
    old = time.time() - 5
    os.utime(path, (old, old))


def put(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_bytes(data)
    settle(p)
    return p


def snapshot(public: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(public)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(public.rglob("*")) if p.is_file()}


def issue_state(engine: sa.Engine, slug: str) -> str | None:
    i = schema.issues
    with engine.connect() as conn:
        return conn.execute(sa.select(i.c.state).where(i.c.kind == "story", i.c.key == slug)).scalar_one_or_none()
