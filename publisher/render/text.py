"""Plain text for the email's text part: one-line hygiene, wrapping by display width, link references.

Wrapping is done by a regex per width (many times faster than textwrap for
the dozens of paragraphs an issue has), with a slower path only for East
Asian wide characters, which take two columns and may break anywhere.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from typing import Any

from ..briefs.model import Rich

TEXT_WIDTH = 72

_PARA_BREAK = re.compile(r"\n[ \t]*\n")


def clean_line(value: str, limit: int | None = None) -> str:
    """One line of display text: control, format and line-separator characters
    become spaces (they could break a header or spoof direction), whitespace
    collapses, and an over-long value is cut with an ellipsis."""
    # isprintable() is False for exactly the Cc/Cf/Zl/Zp/Zs families, so the
    # per-character scan only runs on the rare strings that need it.
    if not value.isprintable():
        value = "".join(
            " " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Zs") else ch for ch in value
        )
    out = " ".join(value.split()) if "  " in value or value[:1] == " " or value[-1:] == " " else value
    if limit is not None and len(out) > limit:
        out = out[: limit - 1].rstrip() + "…"
    return out



@functools.lru_cache(maxsize=32)
def _line_pattern(width: int) -> re.Pattern[str]:
    # Up to ``width`` characters ending at a space, else one whole long word
    # (a URL keeps its own line): greedy filling done by the regex engine,
    # many times faster than textwrap for the dozens of paragraphs per issue.
    # The group is each line without the space after it: words are single
    # spaced, so a line never ends in a space of its own.
    return re.compile(r"(.{1,%d}|\S+)(?: +|$)" % width)


def wrap(value: str, width: int = TEXT_WIDTH, indent: str = "", subsequent: str | None = None) -> str:
    """Fill each paragraph of ``value`` to ``width`` columns.

    The indents used by the templates are the same length on every line
    ("* " then "  "), so one room serves the whole paragraph."""
    text = value if type(value) is str else str(value)
    if "\n" in text:
        return _wrap_paragraphs(text, width, indent, subsequent)
    # One paragraph: most calls (headings, names, a take's sentence).
    sub = indent if subsequent is None else subsequent
    room = width - (len(indent) if len(indent) >= len(sub) else len(sub))
    if room < 20:
        room = 20
    # Printable text holds no whitespace but ' ' (isprintable() is False for
    # every other character str.split() splits at), so without a double,
    # leading or trailing space it is already its words single spaced.
    if not text.isprintable() or "  " in text or text[:1] == " " or text[-1:] == " ":
        text = " ".join(text.split())
    if not text:
        return ""
    if text.isascii() or not _WIDE.search(text):
        if len(text) <= room:
            return indent + text
        cut = text.rfind(" ", 0, room + 1)
        if cut > 0 and len(text) - cut <= room + 1:  # two lines, the commonest long case
            return f"{indent}{text[:cut]}\n{sub}{text[cut + 1:]}"
        return indent + ("\n" + sub).join(_fill_words(text, room))
    return "\n".join(fill_wide(text, width, indent, sub))


def _fill_words(words: str, room: int) -> list[str]:
    """What ``_line_pattern(room).findall(words)`` finds, for words single spaced:
    the longest run of at most ``room`` characters before a space, else one
    whole word (a long URL keeps its own line), by str.rfind instead of a regex."""
    lines = []
    start, size = 0, len(words)
    while size - start > room:
        cut = words.rfind(" ", start, start + room + 1)
        if cut <= start:  # the first word alone is longer than the room
            cut = words.find(" ", start)
            if cut < 0:
                break
        lines.append(words[start:cut])
        start = cut + 1
    lines.append(words[start:])
    return lines


def _wrap_paragraphs(text: str, width: int, indent: str, subsequent: str | None) -> str:
    sub = indent if subsequent is None else subsequent
    room = max(width - max(len(indent), len(sub)), 20)
    pattern = _line_pattern(room)
    out = []
    first = True
    for para in _PARA_BREAK.split(text):
        words = " ".join(para.split())
        if not words:
            continue
        if not words.isascii() and _WIDE.search(words):
            lines = fill_wide(words, width, indent if first else sub, sub)
        else:
            lines = [(indent if first else sub) + ("\n" + sub).join(pattern.findall(words))]
        out.append("\n".join(lines))
        first = False
    return "\n\n".join(out)


# East Asian wide characters take two columns and may break anywhere.
_WIDE = re.compile(
    "[\u1100-\u115f\u2e80-\u303e\u3041-\u33ff\u3400-\u4dbf\u4e00-\u9fff\ua000-\ua4cf"
    "\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6\U00020000-\U0003fffd]"
)
_WIDE_TOKENS = re.compile(_WIDE.pattern + "|[^\\s" + _WIDE.pattern[1:] + "+|\\s+")


def columns(text: str) -> int:
    """Display width in a monospace terminal or mail client."""
    return len(text) if text.isascii() else len(text) + len(_WIDE.findall(text))


def fill_wide(text: str, width: int, indent: str, subsequent: str) -> list[str]:
    """Greedy fill by display columns, breaking between wide characters too."""
    lines: list[str] = []
    line, cols, empty, space = indent, columns(indent), True, False
    for tok in _WIDE_TOKENS.findall(text):
        if tok.isspace():
            space = True
            continue
        sep = " " if space and not empty else ""
        tw = columns(tok)
        if not empty and cols + len(sep) + tw > width:
            lines.append(line)
            line, cols = subsequent + tok, columns(subsequent) + tw
        else:
            line, cols = line + sep + tok, cols + len(sep) + tw
        empty, space = False, False
    lines.append(line)
    return lines


def underline(value: str, char: str) -> str:
    return underline_wrapped(wrap(value), char)


def underline_wrapped(wrapped: str, char: str) -> str:
    """:func:`underline` for a value the caller has already wrapped."""
    if wrapped.isprintable():  # no line break of any kind: one line, the common title
        longest = columns(wrapped)
    else:
        longest = max((columns(line) for line in wrapped.splitlines()), default=0)
    return char * min(max(longest, 3), TEXT_WIDTH)


class Refs:
    """Numbered link references for the plain-text version ("[3]")."""

    __slots__ = ("_marks",)

    def __init__(self) -> None:
        # url -> its mark, numbered in order of first use (a dict keeps it);
        # the mark is made once, not formatted again at every mention.
        self._marks: dict[str, str] = {}

    def ref(self, url: str | None) -> str:
        if not url:
            return ""
        mark = self._marks.get(url)
        if mark is None:
            mark = self._marks[url] = f"[{len(self._marks) + 1}]"
        return mark

    def listing(self) -> str:
        """The "[n] url" lines of the text's Links list."""
        return "".join([f"{mark} {url}\n" for url, mark in self._marks.items()])

    def __iter__(self) -> Any:
        return iter(enumerate(self._marks, 1))

    def __bool__(self) -> bool:
        return bool(self._marks)


def rich_text(refs: Refs) -> Callable[..., str]:
    def rich(value: Rich, indent: str = "", subsequent: str | None = None) -> str:
        body = wrap(value.text, TEXT_WIDTH, indent, subsequent)
        if value.links:
            sub = indent if subsequent is None else subsequent
            marks = ", ".join([f"{link.text} {refs.ref(link.url)}" for link in value.links])
            body += "\n" + wrap(f"(Links: {marks})", TEXT_WIDTH, sub, sub)
        return body

    return rich

