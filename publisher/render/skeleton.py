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
Folding (render.mjml) runs on the joined HTML, as on a direct compile; a
caller that needs only the folded size (a build's web copy) has it counted
from the shape's :class:`Layout` and the bodies (:func:`folded_octets`).

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
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cachetools import LRUCache

from ..core.errors import RenderError
from .mjml import BREAK_AFTER, BREAK_TAG, FOLD_AT, LAST_BREAK, compile_raw, window_cut_points

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
class Layout:
    """Where a shape's literals hold what folding looks for, found once per shape
    (see :func:`folded_octets`); offsets are in UTF-8 octets, per literal."""

    data: tuple[bytes, ...]  # the literals, encoded
    breaks: tuple[tuple[int, ...], ...]  # just after each break tag
    first_newline: tuple[int, ...]  # -1 when none
    last_newline: tuple[int, ...]
    inner_cuts: tuple[int, ...]  # folds in the lines that lie wholly inside the literal


@dataclass(frozen=True)
class Skeleton:
    html: Parts
    debug_slots: frozenset[int]  # slots mrml writes Rust-Debug-escaped (the title as aria-label)
    layout: Layout | None = None  # None: the folded size is found by filling (see folded_octets)


def _has_token(source: str) -> bool:
    # "Q" in: one memchr over the 14 KB MJML; a two-character needle ("Qz")
    # is searched character by character (12 µs a story, the regex 3.5 µs).
    return "Q" in source and _TOKEN_RE.search(source) is not None


def split(source: str) -> tuple[str, list[str]]:
    """(shape, bodies): ``source`` with each body mrml keeps as is replaced by its token."""
    if _has_token(source):
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
    return Skeleton((lits, slots), debug, _layout(lits))


def fill(skeleton: Skeleton, bodies: list[str]) -> str:
    """The compiled HTML (before folding) with ``bodies`` in their places."""
    lits, slots = skeleton.html
    out: list[str] = [""] * (2 * len(lits) - 1)
    out[0::2] = lits
    out[1::2] = [_as_mrml(bodies[i]) for i in slots]
    for n in skeleton.debug_slots:
        out[2 * n + 1] = _rust_debug(bodies[slots[n]])
    return "".join(out)


# -- the folded size without the HTML ----------------------------------------------
#
# A build renders a story's email only to learn how many takes fit the HTML
# budget: render.mjml.html_octets of the filled skeleton. Folding adds one
# newline per cut, and each cut falls after the last break tag within FOLD_AT
# octets of the previous one (else after the last space in text); so the size
# is the pieces' octets plus the cuts, and the cuts follow from where the
# newlines, break tags and spaces are. The literals' newlines and break tags
# are found once per shape; per issue, the bodies are encoded, and searched
# only where a cut may fall. A cut inside text (a comment, which adds octets)
# is left to the exact path, as is a shape where a break tag could straddle a
# literal and a body.


def _layout(lits: Sequence[str]) -> Layout | None:
    """The shape's :class:`Layout`, or None when its folded size must be found by filling."""
    for n, lit in enumerate(lits):
        before_slot, after_slot = n < len(lits) - 1, n > 0
        if before_slot and after_slot and "<" not in lit and ">" not in lit:
            return None  # a break tag could run from one body through this literal into the next
        if (before_slot and _opens_break_tag(lit)) or (after_slot and _closes_break_tag(lit)):
            return None
    data = tuple(lit.encode() for lit in lits)
    breaks = tuple(tuple(m.end() for m in BREAK_TAG.finditer(d)) for d in data)
    first, last, inner = [], [], []
    for n, d in enumerate(data):
        first_nl, last_nl, long_lines = _newlines(d)
        cuts = 0
        for start, end in long_lines:
            found = _fold_cuts([0], [d], [breaks[n]], start, end)
            if found < 0:
                return None  # a line inside the literal needs a cut inside text
            cuts += found
        first.append(first_nl)
        last.append(last_nl)
        inner.append(cuts)
    return Layout(data, breaks, tuple(first), tuple(last), tuple(inner))


def _opens_break_tag(lit: str) -> bool:
    """Whether a break tag could start in ``lit``'s tail and end in what follows:
    each break tag holds one '<' (its first character) and one '>' (its last)."""
    lt = lit.rfind("<")
    return lt >= 0 and ">" not in lit[lt:] and any(word.startswith(lit[lt:]) for word in BREAK_AFTER)


def _closes_break_tag(lit: str) -> bool:
    """Whether a break tag could start before ``lit`` and end in its head."""
    gt = lit.find(">")
    head = lit[: gt + 1]
    return gt >= 0 and "<" not in head and any(word.endswith(head) and word != head for word in BREAK_AFTER)


def _newlines(data: bytes) -> tuple[int, int, list[tuple[int, int]]]:
    """The first and last newline in ``data`` (-1 when none), and the lines between them over FOLD_AT."""
    first = last = data.find(b"\n")
    long_lines: list[tuple[int, int]] = []
    while last >= 0:
        following = data.find(b"\n", last + 1)
        if following < 0:
            break
        if following - last - 1 > FOLD_AT:
            long_lines.append((last + 1, following))
        last = following
    return first, last, long_lines


def _fold_cuts(starts: Sequence[int], data: Sequence[bytes], breaks: Sequence[tuple[int, ...] | None],
               start: int, end: int) -> int:
    """How many cuts render.mjml's folding makes in the line ``start:end``, an offset
    into the HTML whose piece ``k`` is ``data[k]`` at ``starts[k]``; ``breaks[k]``, the
    ends of that piece's break tags, or None to search it. -1 for a cut inside text."""
    cuts = 0
    k = bisect_right(starts, start) - 1
    while end - start > FOLD_AT:
        window = start + FOLD_AT
        while k + 1 < len(starts) and starts[k + 1] <= window:
            k += 1  # the piece the window ends in: windows only move on
        cut = -1
        j = k
        while j >= 0:
            offset = starts[j]
            ends = breaks[j]
            if ends is None:
                found = LAST_BREAK.match(data[j], max(start - offset, 0), window - offset)
                if found is not None:
                    cut = offset + found.end()
                    break
            else:
                i = bisect_right(ends, window - offset) - 1
                if i >= 0:
                    cut = offset + ends[i]
                    break
            if offset <= start:
                break
            j -= 1
        if cut <= start:
            cut = _space_cut(starts, data, start, window)
            if cut < 0:
                return -1
        cuts += 1
        start = cut
    return cuts


def _space_cut(starts: Sequence[int], data: Sequence[bytes], start: int, window: int) -> int:
    """Where folding cuts the window ``start:window`` that holds no break tag, if at a space; else -1."""
    k = bisect_right(starts, start) - 1
    parts = []
    while k < len(starts) and starts[k] < window:
        offset = starts[k]
        parts.append(data[k][max(start - offset, 0) : window - offset])
        k += 1
    space, _text_pos = window_cut_points(b"".join(parts), 0, window - start)
    return start + space if space > 0 else -1


def folded_octets(skeleton: Skeleton, bodies: list[str]) -> int | None:
    """``render.mjml.html_octets(fill(skeleton, bodies))`` without making the HTML,
    or None when only the exact path can tell (then fill and measure)."""
    layout = skeleton.layout
    if layout is None:
        return None
    lits, slots = skeleton.html
    debug = skeleton.debug_slots
    starts: list[int] = []
    data: list[bytes] = []
    breaks: list[tuple[int, ...] | None] = []
    long_lines: list[tuple[int, int]] = []
    pos = line_start = cuts = 0
    ends_with_newline = False
    for n in range(len(lits)):
        piece = layout.data[n]
        starts.append(pos)
        data.append(piece)
        breaks.append(layout.breaks[n])
        first = layout.first_newline[n]
        if first >= 0:
            if pos + first - line_start > FOLD_AT:
                long_lines.append((line_start, pos + first))
            cuts += layout.inner_cuts[n]
            line_start = pos + layout.last_newline[n] + 1
        if piece:
            ends_with_newline = layout.last_newline[n] == len(piece) - 1
        pos += len(piece)
        if n == len(slots):
            break
        body = bodies[slots[n]]
        try:
            piece = (_rust_debug(body) if n in debug else _as_mrml(body)).encode()
        except UnicodeEncodeError:
            return None  # a lone surrogate: the exact path measures line by line
        starts.append(pos)
        data.append(piece)
        breaks.append(None)
        first, last, inner = _newlines(piece)
        if first >= 0:
            if pos + first - line_start > FOLD_AT:
                long_lines.append((line_start, pos + first))
            long_lines += [(pos + a, pos + b) for a, b in inner]
            line_start = pos + last + 1
            ends_with_newline = last == len(piece) - 1
        elif piece:
            ends_with_newline = False
        pos += len(piece)
    if pos - line_start > FOLD_AT:
        long_lines.append((line_start, pos))
    for start, end in long_lines:
        found = _fold_cuts(starts, data, breaks, start, end)
        if found < 0:
            return None
        cuts += found
    return pos + cuts + (0 if ends_with_newline else 1)


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
        """mjml-python's HTML for ``source`` (before folding): :meth:`lookup`, filled."""
        return fill(*self.lookup(key, source, what, marked))

    def lookup(self, key: tuple[object, ...], source: str, what: str,
               marked: Marked | None = None) -> tuple[Skeleton, list[str]]:
        """The compiled shape of ``source`` and the bodies that fill it; ``key`` names the
        settings the MJML was rendered with; ``marked``, the pieces ``source`` was joined
        from and where its bodies are (see :func:`split_marked`). Raises :class:`Unfit`
        to ask for a direct compile."""
        try:
            if self.direct:
                raise Unfit("direct compile asked for")
            if marked is None:
                shape, bodies = split(source)
            elif _has_token(source):
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
            for n in skeleton.debug_slots:
                _rust_debug(bodies[skeleton.html[1][n]])  # raises Unfit here, where it is counted
            return skeleton, bodies
        except Unfit:
            with self._lock:
                self.unfit += 1
            raise

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
