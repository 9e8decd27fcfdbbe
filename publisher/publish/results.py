"""What a scan or build did, and what ``publisher status`` shows: plain values for the CLI, the service and the desk."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass
class SyncResult:
    published: list[str] = field(default_factory=list)  # slugs new or changed
    removed: list[str] = field(default_factory=list)  # slugs gone from the folder
    errors: list[str] = field(default_factory=list)  # "path:line: message"
    waiting: list[str] = field(default_factory=list)  # paths still being written
    written: list[str] = field(default_factory=list)  # public files rewritten
    retrying: list[str] = field(default_factory=list)  # paths whose last publish failed, backing off
    retry_after: float | None = None

    @property
    def changed(self) -> bool:
        return bool(self.published or self.removed or self.errors)


@dataclass(frozen=True)
class Status:
    states: dict[str, int]
    awaiting: list[tuple[str, str]]  # (slug, title)
    errors: list[tuple[str, str]]  # (path, error)
    next_digest: dt.datetime | None
    stories: int
