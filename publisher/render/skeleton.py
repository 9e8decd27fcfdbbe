"""MJML compiled once per document *shape*, then filled per issue.

mjml-python lays out sections, columns and attributes; what sits inside an
``<mj-text>``, ``<mj-raw>`` or ``<mj-title>`` it only re-serialises, and for
the HTML our templates and parser write that re-serialisation is fixed and
local: text and attribute values come out as they went in, and a text node
made only of whitespace that starts with a newline is dropped. So each
issue's MJML (from render.story_mjml, or Jinja2 for other or overridden
templates) is cut into

* its **shape**: the MJML with every such body replaced by a token; the
  key of the cache, and what mjml-python compiles, once per shape;
* its **bodies**: inserted at their tokens in the compiled HTML, with the
  whitespace nodes mrml would drop removed.

A build's stories share a handful of shapes (which blocks exist, the
settings), whatever their text, so nearly every story skips mjml-python.
Folding (render.mjml) runs on the joined HTML, as on a direct compile.

A body stays in the shape (compiled with it, exactly as before) unless it is
non-blank and written in the canonical form mrml keeps: lower-case tags from
a known set, double-quoted attributes, void tags closed with `` />``, no
comments. The title is text, and its copy in ``<body aria-label>`` gets
Rust's Debug escaping (:func:`_rust_debug`), or the issue is compiled
directly. ``tests/render/test_skeleton.py`` checks skeleton == direct compile
for generated briefs (hostile text, RTL, CJK, long words) and every sample.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cachetools import LRUCache

from ..core.errors import RenderError
from .mjml import compile_raw

SHAPES = 128  # compiled shapes kept per process (a build has a few)

_TOKEN = "Qz{}zQ"  # letters and digits only: mjml-python leaves them alone
_TOKEN_RE = re.compile(r"Qz(\d+)zQ")
_TOKENS = tuple(_TOKEN.format(n) for n in range(64))  # a story has about twenty bodies
# An opening tag that is not self-closing (mj-attributes holds <mj-text … />);
# its closing tag is found with str.find (a lazy .*? costs a step per character).
_OPEN = re.compile(r"<mj-(text|raw|title)\b[^>]*(?<!/)>")
# Rust's char::is_whitespace (Unicode White_Space), which mrml uses.
_WS = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_DROPPED_NODE = re.compile(f">\n[{_WS}]*(?=<)")
_VOID = "br|hr|img|wbr"
_ELEMENTS = "a|b|i|u|s|em|strong|code|pre|p|div|span|h[1-6]|ul|ol|li|blockquote|sup|sub|small|table|tbody|thead|tr|td|th"
_ATTRS = r'(?: [a-z][a-z-]*="[^"<>]*")*'
# A tag mrml writes back as it is; a body made only of such tags and text
# comes out unchanged (but for dropped whitespace nodes). Bodies repeat the
# same few dozen tags, so each distinct tag is checked once per process.
_CANONICAL_TAG = re.compile(f"</(?:{_ELEMENTS})>|<(?:{_VOID}){_ATTRS} />|<(?:{_ELEMENTS}){_ATTRS}>")
_TAG = re.compile(r"<[^>]*>?")
_CANONICAL_SEEN: set[str] = set()
_SEEN_MAX = 4096

Parts = tuple[tuple[str, ...], tuple[int, ...]]  # literals (one more than slots), body index per slot
# The element kind a writer gives a body whose tags are all its own, written in
# the canonical form (an <mj-text> or <mj-raw> body): movable unless blank.
OWN = "own"
Marked = tuple[Sequence[str], Iterable[tuple[int, str]]]  # pieces of the MJML, (piece index, element) per body


class Unfit(Exception):
    """This issue cannot take the skeleton path (the caller compiles directly)."""


@dataclass(frozen=True)
class Skeleton:
    html: Parts
    debug_slots: frozenset[int]  # slots mrml writes Rust-Debug-escaped (the title as aria-label)


def split(source: str) -> tuple[str, list[str]]:
    """(shape, bodies): ``source`` with each body mrml keeps as is replaced by its token."""
    if "Qz" in source and _TOKEN_RE.search(source):
        raise Unfit("the MJML contains a token")
    bodies: list[str] = []
    out: list[str] = []
    pos = 0
    for m in _OPEN.finditer(source):
        start = m.end()
        if start < pos:
            continue  # an mj- tag inside a body kept in the shape
        end = source.find(f"</mj-{m.group(1)}>", start)
        if end < 0:
            break  # mjml-python reports it
        body = source[start:end]
        if not _movable(m.group(1), body):
            continue
        out.append(source[pos:start])
        out.append(_TOKEN.format(len(bodies)))
        bodies.append(body)
        pos = end
    out.append(source[pos:])
    return "".join(out), bodies


def split_marked(pieces: Sequence[str], slots: Iterable[tuple[int, str]]) -> tuple[str, list[str]]:
    """:func:`split` of ``"".join(pieces)`` for a writer that marked where the
    bodies are (``slots``: index in ``pieces``, element): no scan of the MJML.

    The writer's contract: every ``<mj-text>``, ``<mj-raw>`` and ``<mj-title>``
    that is not self-closing has its body as one marked piece, and no body
    holds an ``mj-`` tag (its text is escaped); a body marked :data:`OWN` has
    only canonical tags. Bodies that are not movable stay in the shape, as
    split leaves them. ``tests/render/test_skeleton.py`` checks both agree."""
    out = list(pieces)
    bodies: list[str] = []
    for index, kind in slots:
        body = out[index]
        if (body and not body.isspace()) if kind == OWN else _movable(kind, body):
            out[index] = _TOKENS[len(bodies)] if len(bodies) < len(_TOKENS) else _TOKEN.format(len(bodies))
            bodies.append(body)
    return "".join(out), bodies


def _movable(kind: str, body: str) -> bool:
    if not body or body.isspace():
        return False
    if kind == "title":
        return "<" not in body
    if "<" not in body:
        return True
    tags = set(_TAG.findall(body))
    if tags <= _CANONICAL_SEEN:  # one C-level pass: the common case
        return True
    for tag in tags - _CANONICAL_SEEN:
        if _CANONICAL_TAG.fullmatch(tag) is None:
            return False
        if len(_CANONICAL_SEEN) >= _SEEN_MAX:
            _CANONICAL_SEEN.clear()
        _CANONICAL_SEEN.add(tag)
    return True


def _as_mrml(body: str) -> str:
    if "\n" in body:
        return _DROPPED_NODE.sub(">", ">" + body + "<")[1:-1]
    return body


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


def compile_skeleton(shape: str, count: int, what: str) -> Skeleton:
    pieces = _TOKEN_RE.split(compile_raw(shape, what))
    lits, slots = tuple(pieces[0::2]), tuple(int(i) for i in pieces[1::2])
    if any(i >= count for i in slots):
        raise Unfit("mjml-python made a token")
    debug = frozenset(n for n, lit in enumerate(lits[:-1]) if lit.endswith('aria-label="'))
    return Skeleton((lits, slots), debug)


def fill(skeleton: Skeleton, bodies: list[str]) -> str:
    """The compiled HTML (before folding) with ``bodies`` in their places."""
    lits, slots = skeleton.html
    out: list[str] = [""] * (2 * len(lits) - 1)
    out[0::2] = lits
    out[1::2] = [_as_mrml(bodies[i]) for i in slots]
    for n in skeleton.debug_slots:
        out[2 * n + 1] = _rust_debug(bodies[slots[n]])
    return "".join(out)


class SkeletonCache:
    """Compiled shapes, bounded, shared by the threads of a process."""

    def __init__(self, size: int = SHAPES, *, direct: bool = False) -> None:
        self._data: LRUCache[tuple[object, ...], Skeleton] = LRUCache(maxsize=size)
        # Every issue compiled straight from its MJML: the reference the skeleton path is checked against.
        self.direct = direct
        self._lock = threading.Lock()
        self.misses = 0  # shapes compiled
        self.unfit = 0  # issues compiled directly instead (see Unfit)

    def html(self, key: tuple[object, ...], source: str, what: str, marked: Marked | None = None) -> str:
        """mjml-python's HTML for ``source`` (before folding); ``key`` names the settings
        the MJML was rendered with; ``marked``, the pieces ``source`` was joined from and
        where its bodies are (see :func:`split_marked`). Raises :class:`Unfit` to ask
        for a direct compile."""
        try:
            if self.direct:
                raise Unfit("direct compile asked for")
            if marked is None:
                shape, bodies = split(source)
            elif "Qz" in source and _TOKEN_RE.search(source):
                raise Unfit("the MJML contains a token")
            else:
                shape, bodies = split_marked(*marked)
            full_key = (*key, shape)
            with self._lock:
                skeleton = self._data.get(full_key)
            if skeleton is None:
                try:
                    skeleton = compile_skeleton(shape, len(bodies), what)
                except RenderError as exc:
                    raise Unfit(f"the shape did not compile ({exc})") from exc
                with self._lock:
                    self.misses += 1
                    self._data[full_key] = skeleton
            return fill(skeleton, bodies)
        except Unfit:
            with self._lock:
                self.unfit += 1
            raise

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
