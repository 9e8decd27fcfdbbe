"""YAML front matter of a brief: split it off, read it, check each key."""

from __future__ import annotations

import codecs
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, cast

import yaml
from frontmatter.default_handlers import YAMLHandler

from ..core.errors import BriefError
from ..core.urls import is_http_url
from .inline import FORBIDDEN_CONTROLS, Context, short
from .model import Status
from .slugs import MAX_SLUG, SLUG_RE, tag_slug

FRONT_MATTER_KEYS = ("title", "slug", "date", "updated", "status", "tags", "canonical")
_FM_KEY_LINE = re.compile(r"^([A-Za-z_][\w-]*)\s*:")
_BOM = codecs.BOM_UTF8


def decode(data: bytes, path: str) -> str:
    if not data.strip():
        raise BriefError(path, 1, "empty file")
    try:
        # utf-8-sig is utf-8 once a leading BOM is dropped, and a third slower without one.
        text = data.decode("utf-8-sig") if data[:3] == _BOM else data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BriefError(path, line, f"not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})") from exc
    if "\r" not in text:  # the common case: one search, not two scans
        return text
    return text.replace("\r\n", "\n").replace("\r", "\n")


def split_front_matter(lines: list[str], ctx: Context) -> tuple[dict[str, Any], dict[str, int], int]:
    """(metadata, key → line, index of the first body line)."""
    if not lines or lines[0].rstrip() != "---":
        return {}, {}, 0
    end = next((i for i in range(1, len(lines)) if lines[i].rstrip() in ("---", "...")), None)
    if end is None:
        raise BriefError(ctx.path, 1, "front matter opened with '---' is never closed")
    fm_text = "\n".join(lines[1:end])
    try:
        data = YAMLHandler().load(fm_text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BriefError(ctx.path, line, f"bad front matter YAML: {problem}") from exc
    except RecursionError as exc:
        raise BriefError(ctx.path, 2, "bad front matter YAML: nested too deeply") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BriefError(ctx.path, 2, "bad front matter YAML: expected key: value pairs")
    key_lines: dict[str, int] = {}
    for i in range(1, end):
        m = _FM_KEY_LINE.match(lines[i])
        if m:
            key_lines.setdefault(m.group(1), i + 1)
    return data, key_lines, end + 1


def _fm_datetime(value: Any, key: str, line: int, ctx: Context) -> dt.date | dt.datetime | None:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip()) if ("T" in value or " " in value.strip()) else dt.date.fromisoformat(value.strip())
        except ValueError:
            ctx.error(line, f"front matter {key!r}: not a date or datetime: {short(value)}")
            return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            ctx.error(line, f"front matter {key!r}: datetime needs a time zone (e.g. 2026-06-24T09:00:00+00:00)")
            return None
        return value
    if isinstance(value, dt.date):
        return value
    ctx.error(line, f"front matter {key!r}: expected a date, got {type(value).__name__}")
    return None


@dataclass
class FrontMatter:
    title: str | None = None
    slug: str | None = None
    date: dt.date | dt.datetime | None = None
    updated: dt.datetime | None = None
    status: Status = "published"
    tags: tuple[str, ...] = ()
    canonical: str | None = None


def read_front_matter(data: dict[str, Any], key_lines: dict[str, int], ctx: Context) -> FrontMatter:
    fm = FrontMatter()
    if not data:
        return fm  # no front matter (most briefs): every key at its default, nothing to check
    for key in data:
        if str(key) not in FRONT_MATTER_KEYS:
            ctx.warn(key_lines.get(str(key), 2), f"unknown front matter key {str(key)!r} ignored")

    def line(key: str) -> int:
        return key_lines.get(key, 2)

    def string(key: str) -> str | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            ctx.error(line(key), f"front matter {key!r}: expected text, got {type(value).__name__}")
            return None
        return str(value).strip() or None

    fm.title = string("title")
    fm.slug = string("slug")
    if fm.slug is not None and not (SLUG_RE.match(fm.slug) and len(fm.slug) <= MAX_SLUG):
        ctx.error(line("slug"), f"front matter 'slug' must match [a-z0-9-]+ (at most {MAX_SLUG}), got {short(fm.slug)}")
        fm.slug = None
    if "date" in data:
        fm.date = _fm_datetime(data["date"], "date", line("date"), ctx)
    if "updated" in data:
        upd = _fm_datetime(data["updated"], "updated", line("updated"), ctx)
        if isinstance(upd, dt.datetime):
            fm.updated = upd
        elif upd is not None:
            ctx.error(line("updated"), "front matter 'updated' needs a time and a time zone")
    status = data.get("status", "published")
    if status in ("draft", "published"):
        fm.status = cast(Status, status)
    else:
        ctx.error(line("status"), f"front matter 'status' must be draft or published, got {short(str(status))}")
    tags = data.get("tags", [])
    if isinstance(tags, str):
        tags = [t for t in (p.strip() for p in tags.split(",")) if t]
    if not isinstance(tags, list) or not all(isinstance(t, (str, int)) and not isinstance(t, bool) for t in tags):
        ctx.error(line("tags"), "front matter 'tags' must be a list of words")
    else:
        clean = []
        for t in tags:
            t = FORBIDDEN_CONTROLS.sub("", str(t)).strip()
            if not tag_slug(t):
                ctx.warn(line("tags"), f"tag {short(t)} has no letters or digits; ignored")
            elif t not in clean:
                clean.append(t)
        fm.tags = tuple(clean)
    canonical = string("canonical")
    if canonical is not None:
        if is_http_url(canonical):
            fm.canonical = canonical
        else:
            ctx.warn(line("canonical"), f"dropped unsafe canonical URL {short(canonical)}")
    return fm


