"""A Brief as plain JSON-able data (the schema is in docs/brief-format.md)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from .model import Brief


def _plain(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def brief_to_dict(brief: Brief) -> dict[str, Any]:
    raw = dataclasses.asdict(brief)
    raw.pop("findings", None)
    data: dict[str, Any] = {k: _plain(v) for k, v in raw.items()}
    data["meta"]["counts"] = {k: v for k, v in brief.meta.counts}
    data["meta"]["extra"] = {k: v for k, v in brief.meta.extra}
    data["parsed_counts"] = {
        "takes": brief.take_count,
        "lenses": len(brief.lenses),
        "regions": len(brief.regions),
    }
    data["findings"] = [str(f) for f in brief.findings]
    return data
