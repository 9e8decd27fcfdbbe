"""CSV import and export of subscribers.

Import is forgiving row by row and strict per row: every bad row is
reported by its line number and the good rows go in. An optional header
names the columns (``email``, ``cadence``, ``status``); without one the
columns are in that order. Addresses already in the store are left as
they are, so a re-import can never resubscribe someone who left.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TextIO

from ..core.addresses import InvalidAddress, normalize_email
from ..core.errors import PublisherError
from ..core.states import CADENCES, SubscriberStatus
from ..store import subscribers as subscribers_store
from ..store.engine import Engine

log = logging.getLogger(__name__)

COLUMNS = ("email", "cadence", "status")
EXPORT_COLUMNS = ("email", "status", "cadence", "bounces", "created_at", "confirmed_at", "unsubscribed_at")
IMPORT_STATUSES = (SubscriberStatus.ACTIVE.value, SubscriberStatus.PENDING.value, SubscriberStatus.UNSUBSCRIBED.value, SubscriberStatus.BOUNCED.value)
CHUNK = 1000


@dataclass(frozen=True, slots=True)
class RowProblem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class ImportReport:
    source: str
    added: int = 0
    existing: int = 0  # already in the store (or repeated in the file)
    problems: list[RowProblem] = field(default_factory=list)

    def lines(self) -> Iterator[str]:
        for p in self.problems:
            yield f"{self.source}:{p.line}: {p.message}"


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    email: str
    cadence: str
    status: str


def _parse_rows(reader: Iterable[list[str]], default_cadence: str, report: ImportReport) -> Iterator[_Row]:
    columns: tuple[str, ...] = COLUMNS
    first = True
    for index, raw in enumerate(reader, start=1):
        line = index
        cells = [c.strip() for c in raw]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if first:
            first = False
            lowered = tuple(c.lower() for c in cells)
            if "email" in lowered:
                # The export's extra columns are known and ignored: export → import round-trips.
                unknown = [c for c in lowered if c and c not in COLUMNS and c not in EXPORT_COLUMNS]
                if unknown:
                    report.problems.append(RowProblem(line, f"unknown column(s) {', '.join(unknown)} ignored"))
                columns = lowered
                continue
        values = dict(zip(columns, cells))
        try:
            email = normalize_email(values.get("email", ""))
        except InvalidAddress as exc:
            report.problems.append(RowProblem(line, f"invalid address: {exc}"))
            continue
        cadence = (values.get("cadence") or default_cadence).lower()
        if cadence not in CADENCES:
            report.problems.append(RowProblem(line, f"cadence {cadence!r}: expected {'/'.join(CADENCES)}"))
            continue
        status = (values.get("status") or "active").lower()
        if status not in IMPORT_STATUSES:
            report.problems.append(RowProblem(line, f"status {status!r}: expected {'/'.join(IMPORT_STATUSES)}"))
            continue
        yield _Row(line, email, cadence, status)


def import_csv(
    engine: Engine,
    stream: TextIO,
    *,
    source: str,
    now: dt.datetime,
    default_cadence: str = "instant",
) -> ImportReport:
    """Add every valid row of a CSV; bad rows are reported, not fatal.

    Rows without a status are imported ``active``: the list owner vouches
    for consent, as with any ESP import. Written in chunks, so a 100k-row
    file never sits in memory.
    """
    subscribers_store.check_cadence(default_cadence)
    report = ImportReport(source)
    at = subscribers_store.utc(now)
    seen: set[str] = set()
    chunk: list[_Row] = []
    try:
        reader = csv.reader(stream)
        for row in _parse_rows(reader, default_cadence, report):
            if row.email in seen:
                report.existing += 1
                continue
            seen.add(row.email)
            chunk.append(row)
            if len(chunk) >= CHUNK:
                _flush(engine, chunk, at, report)
                chunk = []
        _flush(engine, chunk, at, report)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise PublisherError(f"{source}: not a readable CSV file: {exc}") from exc
    log.info("%s: %d added, %d existing, %d bad rows", source, report.added, report.existing, len(report.problems))
    return report


def _flush(engine: Engine, chunk: list[_Row], at: dt.datetime, report: ImportReport) -> None:
    if not chunk:
        return
    added = subscribers_store.insert_new(engine, [(r.email, r.status, r.cadence) for r in chunk], now=at)
    report.added += added
    report.existing += len(chunk) - added


def _stamp(value: dt.datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def export_csv(engine: Engine, out: TextIO, *, status: str | None = None) -> int:
    """Every subscriber as CSV (streamed); the number of rows written."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    n = 0
    for s in subscribers_store.list_subscribers(engine, status=status):
        writer.writerow(
            [s.email, s.status, s.cadence, s.bounces, _stamp(s.created_at), _stamp(s.confirmed_at), _stamp(s.unsubscribed_at)]
        )
        n += 1
    return n


def import_text(engine: Engine, text: str, *, source: str, now: dt.datetime) -> ImportReport:
    return import_csv(engine, io.StringIO(text), source=source, now=now)
