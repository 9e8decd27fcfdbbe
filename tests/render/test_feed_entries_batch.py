"""Entries made in one feedgen document (feedxml.entries_xml) are each the bytes of the entry made alone."""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.briefs import parse_brief
from publisher.core.errors import BriefError
from publisher.render.feed_entries import Entry, FeedStory, make_entry
from publisher.render.feedxml import entries_xml
from tests.support.briefgen import brief_text
from tests.support.files import DATA, SAMPLES
from tests.support.project import build_config

BASE = "https://briefs.example.org/"
CONFIGS = [
    build_config(site={"base_url": BASE}),
    build_config(site={"base_url": BASE, "author_email": "desk@briefs.example.org", "tz": "Asia/Kathmandu"},
                 feeds={"hub": "https://hub.example/"}),
]
WHEN = dt.datetime(2026, 6, 24, 9, 30, tzinfo=dt.timezone.utc)


def _entries(texts: list[bytes], cfg_index: int) -> list[Entry]:
    out, seen = [], set()
    for n, data in enumerate(texts):
        try:
            brief = parse_brief(data, f"s{n}.md", base_url=BASE)
        except BriefError:
            continue
        if brief.slug not in seen:
            seen.add(brief.slug)
            when = WHEN + dt.timedelta(minutes=n)
            out.append(make_entry(FeedStory(brief, when, when + dt.timedelta(hours=n % 3)), CONFIGS[cfg_index]))
    return out


def _check(entries: list[Entry], cfg_index: int) -> None:
    cfg = CONFIGS[cfg_index]
    assert entries_xml(entries, cfg) == [entries_xml([e], cfg)[0] for e in entries]


def test_every_sample_in_one_document() -> None:
    texts = [p.read_bytes() for p in sorted((DATA / "briefs").iterdir()) + sorted(SAMPLES.iterdir())]
    for cfg_index in range(len(CONFIGS)):
        entries = _entries(texts, cfg_index)
        assert len(entries) > 3
        _check(entries, cfg_index)
        _check(entries[::-1], cfg_index)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(brief_text(), min_size=2, max_size=5), st.integers(0, len(CONFIGS) - 1))
def test_generated_briefs_in_one_document(texts: list[str], cfg_index: int) -> None:
    # Distinct slugs: the canonical line is not always there, so each text gets its own.
    unique = [t + f"\nCanonical: https://example.org/n/story-{n}\n" for n, t in enumerate(texts)]
    _check(_entries([t.encode("utf-8") for t in unique], cfg_index), cfg_index)
