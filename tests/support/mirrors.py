"""What the tests of a Python writer that mirrors templates share (render.story_html, story_mjml,
archive_html): site configs whose differences each branch of a writer shows, and a switch that
sends a writer's caller through Jinja2 instead."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from tests.support.project import build_config

BASE = "https://briefs.example.org/"
SITE_CONFIGS = [
    build_config(site={"title": "World Briefs", "base_url": BASE}),
    build_config(site={"title": "A & B <Briefs> \"q\" 'x'", "subtitle": "Sub & <title> 'q'", "base_url": "https://example.org/news/",
                       "language": "ar", "logo": "https://briefs.example.org/l.png?a=1&b=2"}),
    build_config(site={"title": "中文简报", "base_url": "http://127.0.0.1:8000/a b/", "language": "he", "timezone": "Pacific/Kiritimati"}),
    build_config(site={"base_url": BASE, "language": "zh-Hant", "subtitle": ""}),
]


@contextmanager
def through_jinja(writer: ModuleType) -> Iterator[None]:
    """``writer``'s templates taken for edited ones while inside: its callers render through Jinja2."""
    saved = getattr(writer, "SOURCES_SHA256")  # every writer has one; a module type does not say so
    setattr(writer, "SOURCES_SHA256", "not the built-in templates")
    try:
        yield
    finally:
        setattr(writer, "SOURCES_SHA256", saved)
