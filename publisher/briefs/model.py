"""Domain types of a brief, shared by the parser and every renderer.

All are frozen: a parsed brief is a value. Rich text fields carry both a
safe HTML rendering (escaped, only absolute http(s) links) and a plain-text
rendering, so renderers never run Markdown themselves.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["draft", "published"]
Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Link:
    """A link found in rich text: its visible text and absolute http(s) URL."""

    text: str
    url: str


@dataclass(frozen=True, slots=True)
class Rich:
    """Inline or block Markdown rendered once by the parser.

    ``html`` is safe to embed as-is (everything escaped, raw HTML never
    passed through, only absolute http(s) hrefs); ``text`` is the plain
    rendering with link targets dropped (they are in ``links``).
    """

    html: str
    text: str
    links: tuple[Link, ...] = ()

    def __bool__(self) -> bool:
        text = self.text
        return bool(text) and not text.isspace()  # bool(text.strip()), without copying the text


EMPTY = Rich("", "")

# A frozen dataclass's __init__ sets each field by object.__setattr__; a parse
# makes a Rich for every text field and a Take for every take, and setting
# their slots through the slot descriptors costs half as much. rich() and
# take() build the same values (tests/briefs/test_parse_fast_paths.py checks
# them against the constructors, field by field).
_new: Any = object.__new__
_set_html, _set_text, _set_links = (getattr(Rich, name).__set__ for name in ("html", "text", "links"))


def rich(html: str, text: str, links: tuple[Link, ...] = ()) -> Rich:
    """``Rich(html, text, links)``, built through the slots."""
    value: Rich = _new(Rich)
    _set_html(value, html)
    _set_text(value, text)
    _set_links(value, links)
    return value


@dataclass(frozen=True, slots=True)
class Take:
    """One outlet's coverage of the story, inside a lens group."""

    outlet: str
    region: str
    language: str
    text: Rich  # the one-line take; may be empty
    quote: str | None  # plain text, surrounding quotes removed
    source: str | None  # absolute http(s) URL, or None
    line: int  # 1-based line in the brief file


_set_outlet, _set_region, _set_language, _set_take_text, _set_quote, _set_source, _set_line = (
    getattr(Take, name).__set__ for name in ("outlet", "region", "language", "text", "quote", "source", "line")
)


def take(outlet: str, region: str, language: str, text: Rich, quote: str | None, source: str | None, line: int) -> Take:
    """``Take(...)`` with the same arguments, built through the slots."""
    value: Take = _new(Take)
    _set_outlet(value, outlet)
    _set_region(value, region)
    _set_language(value, language)
    _set_take_text(value, text)
    _set_quote(value, quote)
    _set_source(value, source)
    _set_line(value, line)
    return value


@dataclass(frozen=True, slots=True)
class Lens:
    """A group of takes sharing a bias or viewpoint ("### <lens>")."""

    name: str
    takes: tuple[Take, ...]
    line: int


@dataclass(frozen=True, slots=True)
class Meta:
    """The ``**Meta:**`` line, as written (counts are the claimed ones)."""

    type: str | None = None
    date: dt.date | None = None
    heads: tuple[str, ...] = ()
    counts: tuple[tuple[str, int], ...] = ()  # e.g. (("takes", 17), ("lenses", 6))
    extra: tuple[tuple[str, str], ...] = ()  # other "key: value" items
    line: int | None = None

    def count(self, name: str) -> int | None:
        for key, value in self.counts:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class Section:
    """A section the format does not know, kept and rendered generically."""

    title: str
    body: Rich
    line: int


@dataclass(frozen=True, slots=True)
class Finding:
    """A lint finding: ``path:line: severity: message``."""

    path: str
    line: int | None
    severity: Severity
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.severity}: {self.message}"


@dataclass(frozen=True, slots=True)
class Brief:
    """One news story, parsed. Front matter has already overridden the body."""

    path: str  # as given to the parser (used in messages only)
    slug: str  # [a-z0-9-]+, the story's stable identity
    title: str
    dek: str | None
    meta: Meta
    date: dt.date | dt.datetime  # a datetime is always timezone-aware
    updated: dt.datetime | None  # from front matter only; else renderers derive it
    status: Status
    tags: tuple[str, ...]
    canonical: str | None  # absolute http(s) URL
    summary: Rich
    why_it_matters: Rich
    what_to_watch: tuple[Rich, ...]
    lenses: tuple[Lens, ...]
    related: tuple[str, ...]  # slugs from [[slug]]
    entities: tuple[str, ...]
    sections: tuple[Section, ...] = ()  # unknown sections, in order
    content_hash: str = ""  # sha256 hex of the raw file bytes
    findings: tuple[Finding, ...] = field(default=(), compare=False)

    @property
    def takes(self) -> tuple[Take, ...]:
        return tuple(t for lens in self.lenses for t in lens.takes)

    @property
    def take_count(self) -> int:
        return sum(len(lens.takes) for lens in self.lenses)

    @property
    def regions(self) -> tuple[str, ...]:
        """Distinct regions in first-seen order."""
        seen: dict[str, None] = {}
        for take in self.takes:
            if take.region:
                seen.setdefault(take.region, None)
        return tuple(seen)

    def region_distribution(self) -> list[tuple[str, int]]:
        """Takes per region, most first, ties in first-seen order."""
        counter = Counter(t.region for t in self.takes if t.region)
        order = {r: i for i, r in enumerate(self.regions)}
        return sorted(counter.items(), key=lambda kv: (-kv[1], order[kv[0]]))

    def counts_line(self) -> str:
        """e.g. ``17 takes · 6 lenses · 8 regions`` from what was parsed."""
        n_takes, n_lenses, n_regions = self.take_count, len(self.lenses), len(self.regions)
        parts = [
            f"{n_takes} take{'s' if n_takes != 1 else ''}",
            f"{n_lenses} lens{'es' if n_lenses != 1 else ''}",
            f"{n_regions} region{'s' if n_regions != 1 else ''}",
        ]
        return " · ".join(parts)

    def published_at(self, tz: dt.tzinfo) -> dt.datetime:
        """The publication instant; a bare date means local midnight in ``tz``."""
        if isinstance(self.date, dt.datetime):
            return self.date
        return dt.datetime.combine(self.date, dt.time(0, 0), tzinfo=tz)

    @property
    def is_draft(self) -> bool:
        return self.status == "draft"
