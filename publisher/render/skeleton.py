"""MJML compiled once per document *shape*, then filled per issue.

mjml-python's output depends on a document's structure, not on its text:
text nodes and attribute values inside ``mj-text``/``mj-raw``/``mj-title``
come out as they went in. So the view model is split in two:

* its **shape**: which strings are empty, how long each list is, a small
  class of each number (0, 1, more: the templates only ask ``!= 1`` and
  truth), and a few values MJML itself interprets (``lang``, ``dir``,
  ``align``, ``list_margin``) kept literal;
* its **values**: every other string and number, in walk order.

The first issue of a shape renders the template with a unique token per
value, compiles that once and keeps both the MJML and the HTML split at the
tokens. Every later issue of the shape only escapes its values and joins.
Folding (render.mjml) runs on the joined HTML, as it does on a direct compile.

Exactly where mjml-python changes what it was given, the value is changed
the same way or the direct path is taken:

* plain values are escaped as Jinja's autoescape does; a value that is
  only whitespace (mrml drops some such text nodes) sends the issue down
  the direct path;
* safe HTML (the parser's rich fields) must sit between two tags in the
  template (checked when the shape is compiled) and use only canonical
  tags (``<a href="…">``, ``<br />``; checked per value), else the direct
  path; mrml drops its whitespace-only text nodes that start with a
  newline, and so does :func:`_as_mrml`.

``tests/render/test_skeleton.py`` checks skeleton == direct compile for
generated briefs (hostile text, RTL, CJK, long words) and for every sample.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import unicodedata
from collections.abc import Callable
from typing import Any

from cachetools import LRUCache
from markupsafe import Markup, escape

from .mjml import compile_raw

# Values MJML interprets (direction, alignment, margins): part of the shape.
LITERAL_KEYS = frozenset({"lang", "dir", "align", "list_margin", "italic"})
SHAPES = 256  # compiled skeletons kept per process (a build has a few dozen)

_TOKEN = "Qz{}zQ"  # letters and digits only: nothing in MJML or Jinja changes them
_TOKEN_RE = re.compile(r"Qz(\d+)zQ")
# Rust's char::is_whitespace (Unicode White_Space), which mrml uses.
_WS = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_DROPPED_NODE = re.compile(f">\n[{_WS}]*(?=<)")
_ONLY_WS = re.compile(f"[{_WS}]+")
_VOID = frozenset({"br", "hr", "img", "wbr"})
_TAG = re.compile(r"<[^>]*>?")
_CANONICAL_TAG = re.compile(r'</[a-z][a-z0-9]*>|<([a-z][a-z0-9]*)(?: [a-z][a-z-]*="[^"<>]*")*( /)?>')

Parts = tuple[tuple[str, ...], tuple[int, ...]]  # literals (one more than slots), value index per slot


class Unfit(Exception):
    """This view model or value cannot take the skeleton path (the caller compiles directly)."""


class _Int(int):
    """A number standing for a token: compares as its shape class, prints as its token."""

    token: str

    def __new__(cls, shape: int, token: str) -> _Int:
        obj = super().__new__(cls, shape)
        obj.token = token
        return obj

    def __html__(self) -> str:
        return self.token

    def __str__(self) -> str:
        return self.token


_FIELDS: dict[type, tuple[str, ...]] = {}


def _fields(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        if not dataclasses.is_dataclass(cls):
            raise Unfit(f"no skeleton for a {cls.__name__} in the view model")
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def scan(obj: Any, marks: list[object], values: list[object]) -> None:
    """Append ``obj``'s shape to ``marks`` and its values to ``values`` (walk order).

    Leaves are handled in the parent's loop: a call per string would cost
    more than the rest of the walk."""
    t = type(obj)
    if t is dict:
        items: Any = obj.items()
    elif t is list or t is tuple:
        marks.append(len(obj))
        items = enumerate(obj)
    else:
        items = ((name, getattr(obj, name)) for name in _fields(t))
    for key, item in items:
        ti = type(item)
        if key in LITERAL_KEYS:
            marks.append(item)
        elif ti is str or ti is Markup:
            if item:
                values.append(item)
                marks.append("M" if ti is Markup else "s")
            else:
                marks.append("")
        elif item is None or ti is bool:
            marks.append(item)
        elif ti is int:
            values.append(item)
            marks.append(item if item < 2 else 2)
        else:
            scan(item, marks, values)


def _tokenize(obj: Any, counter: list[int]) -> Any:
    """``obj`` with each value replaced by its token, in :func:`scan`'s order."""
    t = type(obj)
    if t is str or t is Markup:
        if not obj:
            return obj
        counter[0] += 1
        return Markup(_TOKEN.format(counter[0] - 1))
    if t is int:
        counter[0] += 1
        return _Int(obj if obj < 2 else 2, _TOKEN.format(counter[0] - 1))
    if t is list or t is tuple:
        return t(_tokenize(item, counter) for item in obj)
    if t is dict:
        return {key: item if key in LITERAL_KEYS else _tokenize(item, counter) for key, item in obj.items()}
    if obj is None or t is bool:
        return obj
    changes = {name: _tokenize(getattr(obj, name), counter) for name in _fields(t) if name not in LITERAL_KEYS}
    return dataclasses.replace(obj, **changes)


def _split(text: str, count: int) -> Parts:
    pieces = _TOKEN_RE.split(text)
    slots = tuple(int(i) for i in pieces[1::2])
    if any(i >= count for i in slots):
        raise Unfit("the template itself contains a token")
    return tuple(pieces[0::2]), slots


@dataclasses.dataclass(frozen=True)
class Skeleton:
    mjml: Parts
    html: Parts
    between_tags: frozenset[int]  # safe-HTML values that sit between two tags in the MJML
    debug_slots: frozenset[int]  # HTML slots that mrml writes Rust-Debug-escaped (the title as aria-label)


# mrml copies <mj-title> into <body aria-label="…"> through Rust's Debug
# escaping: backslash, quote and newline escaped, non-printable and
# combining characters as \u{…}. Letters, digits, punctuation and symbols
# pass unchanged but for a few combining ones (Grapheme_Extend).
_DEBUG_PLAIN = re.compile(r"[ !#-\[\]-~]*")
_DEBUG_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_GRAPHEME_EXTEND_SYMBOLS = frozenset(chr(c) for c in (0xFF9E, 0xFF9F, *range(0x1F3FB, 0x1F400)))


def _rust_debug(value: str) -> str:
    if _DEBUG_PLAIN.fullmatch(value):
        return value
    out = []
    for ch in value:
        if ch in _DEBUG_ESCAPES:
            out.append(_DEBUG_ESCAPES[ch])
        elif " " <= ch <= "~" or (
            ch > "\x7f" and unicodedata.category(ch)[0] in "LNPS" and ch not in _GRAPHEME_EXTEND_SYMBOLS
        ):
            out.append(ch)
        else:
            raise Unfit(f"the title has a character mrml escapes ({ch!r})")
    return "".join(out)


def compile_skeleton(render: Callable[[dict[str, Any]], str], context: dict[str, Any], count: int, what: str) -> Skeleton:
    tokenized = _tokenize(context, [0])
    source = render(tokenized)
    lits, slots = _split(source, count)
    between = frozenset(
        i for n, i in enumerate(slots) if lits[n][-1:] == ">" and lits[n + 1][:1] == "<"
    )
    html = _split(compile_raw(source, what), count)
    debug = frozenset(n for n, lit in enumerate(html[0][:-1]) if lit.endswith('aria-label="'))
    return Skeleton((lits, slots), html, between, debug)


_NEEDS_ESCAPE = re.compile("[&<>'\"]")


def _plain(value: object) -> str:
    if type(value) is int:
        return str(value)
    out = str(value)
    if _NEEDS_ESCAPE.search(out):
        out = str(escape(out))
    # Whitespace merges with the template's text around it into one text
    # node, which mrml may drop: too rare a value to model. (str.isspace
    # covers every character Rust's is_whitespace does.)
    if out[:1].isspace() and out.isspace():
        raise Unfit("a whitespace-only value")
    return out


def _as_mrml(value: str) -> str:
    """Safe HTML as mrml re-serialises it (see the module docstring)."""
    if "<" in value:
        for tag in _TAG.findall(value):
            m = _CANONICAL_TAG.fullmatch(tag)
            if m is None or (m.group(1) is not None and (m.group(1) in _VOID) != (m.group(2) is not None)):
                raise Unfit(f"non-canonical tag {tag[:40]!r} in safe HTML")
    if "\n" in value:
        value = _DROPPED_NODE.sub(">", ">" + value + "<")[1:-1]
    return value


def _join(parts: Parts, filled: list[str], debug: frozenset[int] = frozenset()) -> str:
    lits, slots = parts
    out: list[str] = [""] * (2 * len(lits) - 1)
    out[0::2] = lits
    out[1::2] = [filled[i] for i in slots]
    for n in debug:
        out[2 * n + 1] = _rust_debug(out[2 * n + 1])
    return "".join(out)


def fill(skeleton: Skeleton, values: list[object]) -> tuple[str, str]:
    """(MJML source, compiled HTML before folding) for these values."""
    source_vals: list[str] = []
    html_vals: list[str] = []
    for i, value in enumerate(values):
        if type(value) is str and not _NEEDS_ESCAPE.search(value) and not value[:1].isspace():
            source_vals.append(value)
            html_vals.append(value)
        elif type(value) is Markup:
            raw = str(value)
            if i not in skeleton.between_tags:
                raise Unfit("safe HTML outside a tag pair")
            source_vals.append(raw)
            html_vals.append(_as_mrml(raw))
        else:
            plain = _plain(value)
            source_vals.append(plain)
            html_vals.append(plain)
    debug = skeleton.debug_slots
    if debug and any(type(values[skeleton.html[1][n]]) is Markup for n in debug):
        raise Unfit("safe HTML in the title")
    return _join(skeleton.mjml, source_vals), _join(skeleton.html, html_vals, debug)


class SkeletonCache:
    """Compiled skeletons by shape, bounded, shared by the threads of a process."""

    def __init__(self, size: int = SHAPES) -> None:
        self._data: LRUCache[tuple[object, ...], Skeleton] = LRUCache(maxsize=size)
        self._lock = threading.Lock()
        self.misses = 0  # shapes compiled
        self.unfit = 0  # issues compiled directly instead (see Unfit)

    def render(self, key: tuple[object, ...], render: Callable[[dict[str, Any]], str], context: dict[str, Any],
               what: str) -> tuple[str, str]:
        """(MJML source, compiled HTML before folding) for ``context``; ``key`` names the
        template set and settings, the context's shape is added here.

        Raises :class:`Unfit` when this context must be compiled directly."""
        marks: list[object] = []
        values: list[object] = []
        try:
            scan(context, marks, values)
        except Unfit:
            self._count_unfit()
            raise
        full_key = (*key, tuple(marks))
        with self._lock:
            skeleton = self._data.get(full_key)
        if skeleton is None:
            skeleton = compile_skeleton(render, context, len(values), what)
            with self._lock:
                self.misses += 1
                self._data[full_key] = skeleton
        try:
            return fill(skeleton, values)
        except Unfit:
            self._count_unfit()
            raise

    def _count_unfit(self) -> None:
        with self._lock:
            self.unfit += 1

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
