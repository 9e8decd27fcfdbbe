"""MJML → HTML with mjml-python, and the HTML made safe for a MIME body.

Every line stays under RFC 5322's 998 octets (folded at tag boundaries
where a newline renders as nothing), and an unknown ``mj-`` tag is an
error rather than a silent pass-through.
"""

from __future__ import annotations

import re

import mjml

from ..core.errors import RenderError

MAX_LINE_OCTETS = 998  # RFC 5322 hard limit, excluding CRLF
FOLD_AT = 900  # fold HTML lines well before the hard limit

_LEFTOVER_MJ = re.compile(r"<\s*/?\s*mj-[\w-]*", re.IGNORECASE)
# Tags after which a newline renders as nothing.
BREAK_AFTER = tuple(f"</{t}>" for t in "td tr th div p table tbody thead li ul ol h1 h2 h3 caption colgroup".split()) + (
    "<tbody>",
    "<tr>",
    "<![endif]-->",
)
_BREAK_BYTES = tuple(t.encode() for t in BREAK_AFTER)


def _trie(words: list[bytes]) -> bytes:
    """A regex matching exactly ``words`` (prefix-free: each tag ends at its only
    '>'), branching one byte at a time: the engine rejects a '</a>' after two
    byte tests instead of trying every tag in turn."""
    if words == [b""]:
        return b""
    heads: dict[bytes, list[bytes]] = {}
    for word in sorted(words):
        heads.setdefault(word[:1], []).append(word[1:])
    branches = [re.escape(head) + _trie(rest) for head, rest in heads.items()]
    return branches[0] if len(branches) == 1 else b"(?:" + b"|".join(branches) + b")"


BREAK_TAG = re.compile(_trie(list(_BREAK_BYTES)))  # any one (render.skeleton lists a shape's once)

# The last break tag lying wholly in data[pos:endpos], found by one match: the
# greedy ``.*`` jumps to endpos and backtracks only to the '<' of that tag (the
# regex engine skips ahead to each '<'), where a walk back over every '>' in
# Python cost a call per tag. Each break tag holds one '<' and one '>', so tags
# never overlap and the match with the last start is the one with the last end.
LAST_BREAK = re.compile(rb"(?s:.*)" + BREAK_TAG.pattern)


def _fold_html(html: str) -> str:
    """Keep every line under the 8bit limit. Over-long lines (mjml-python
    writes the body as one) are cut after block-level tags, where a newline
    renders as nothing, as few times as needed; a paragraph still too long
    is cut at spaces between words."""
    return _fold_measured(html)[0]


def _fold_measured(html: str) -> tuple[str, int]:
    """(:func:`_fold_html`'s result, octets in its longest line): the octets are
    at hand while folding, so nothing is encoded twice."""
    folded, longest, _octets = _fold_sized(html)
    return folded, longest


def _fold_sized(html: str) -> tuple[str, int, int]:
    """:func:`_fold_measured`'s pair and the result's UTF-8 octets (-1 when not
    known). The HTML is encoded once and cut into lines as bytes, decoded once
    at the end."""
    try:
        data = html.encode()
    except UnicodeEncodeError:  # a lone surrogate: measure and fold line by line
        return (*_fold_measured_lines(html), -1)
    folded, longest = _fold_encoded(data)
    if folded is None:
        return html, longest, len(data)
    data = b"\n".join(folded)
    return data.decode(), longest, len(data)


def _fold_encoded(data: bytes) -> tuple[list[bytes] | None, int]:
    """The lines of ``data`` with each over-long one replaced by its pieces (None when
    no line is over-long), and the octets of the longest line once folded."""
    lines = data.split(b"\n")
    sizes = list(map(len, lines))
    if max(sizes) <= FOLD_AT:
        return None, max(sizes)
    out: list[bytes] = []  # the lines with each long one's pieces in its place: one join
    done = 0
    for i in [i for i, size in enumerate(sizes) if size > FOLD_AT]:
        pieces = _fold_data(lines[i])
        out += lines[done:i]
        out += pieces
        done = i + 1
        sizes[i] = max(map(len, pieces))
    out += lines[done:]
    return out, max(sizes)


def _fold_measured_lines(html: str) -> tuple[str, int]:
    """:func:`_fold_measured` for HTML that does not encode as a whole; lines up
    to FOLD_AT // 4 characters are measured in characters (they cannot reach the limit)."""
    lines = html.split("\n")
    sizes = list(map(len, lines))
    for i in [i for i, size in enumerate(sizes) if size > FOLD_AT // 4]:
        line = lines[i]
        if sizes[i] <= FOLD_AT and not line.isascii():
            sizes[i] = len(line.encode())
        if sizes[i] > FOLD_AT:
            pieces = _fold_bytes(line)
            lines[i] = b"\n".join(pieces).decode()
            sizes[i] = max(map(len, pieces))
    return "\n".join(lines), max(sizes)


def _fold_line(line: str) -> list[str]:
    return [piece.decode() for piece in _fold_bytes(line)]


def _fold_bytes(line: str) -> list[bytes]:
    """Cut one over-long line into pieces of at most FOLD_AT octets.

    Works on bytes (the limit is in octets; every cut point is ASCII, so no
    multi-byte character is split). In each window, cut after the last
    block-level tag; else after the last space between words; else (CJK
    prose, one huge word) inside the text through an empty comment, since a
    bare newline between CJK characters would render as a space."""
    return _fold_data(line.encode())


def _fold_data(data: bytes) -> list[bytes]:
    """:func:`_fold_bytes` for a line already encoded."""
    pieces: list[bytes] = []
    start = 0
    last_break = LAST_BREAK.match
    limit = len(data) - FOLD_AT  # a window starting before it leaves a too-long rest
    while start < limit:
        end = start + FOLD_AT
        tag = last_break(data, start, end)  # after the window's last block-level tag
        if tag is not None:
            cut = tag.end()
            pieces.append(data[start:cut])
            start = cut
            continue
        space, text_pos = window_cut_points(data, start, end)
        if space > start:
            pieces.append(data[start:space])
            start = space
        elif text_pos > start:
            pieces.append(data[start:text_pos] + b"<!--")
            data = data[:text_pos] + b"-->" + data[text_pos:]
            limit += 3
            start = text_pos
        else:
            break  # nothing safe to cut: the caller reports the long line
    pieces.append(data[start:])
    return pieces


_TAG_OR_TEXT_B = re.compile(rb"<[^>]*>?|[^<]+")


def window_cut_points(data: bytes, start: int, end: int) -> tuple[int, int]:
    """(just after the last space in element text, a late safe position in
    element text) within data[start:end]; 0 where there is none. Text inside
    <title>/<style> and character references are never cut.

    ``start`` is never inside a tag (cuts fall after '>' or in text), so a
    space is in text exactly when no '<' after the last '>' precedes it; the
    last such space, the common answer, needs no walk over the window."""
    hi = end
    while True:
        q = data.rfind(b" ", start, hi)
        if q < 0:
            break
        lt = data.rfind(b"<", start, q)
        if lt < 0:
            return q + 1, 0
        gt = data.rfind(b">", start, q)
        if gt < lt:
            hi = lt  # inside the tag opened at lt: look before it
            continue
        # In text after the tag opened at lt: fine unless that is <title> or
        # <style>, or lt is itself inside an earlier tag (then walk).
        if data[lt : lt + 6].lower() not in (b"<title", b"<style") and data.rfind(b"<", start, lt) <= data.rfind(b">", start, lt):
            return q + 1, 0
        break
    return _scan_cut_points(data, start, end)


def _scan_cut_points(data: bytes, start: int, end: int) -> tuple[int, int]:
    space = text_pos = 0
    previous_tag = b""
    for m in _TAG_OR_TEXT_B.finditer(data, start, end):
        chunk = m.group()
        if chunk.startswith(b"<"):
            previous_tag = chunk
            continue
        if previous_tag[:6].lower() in (b"<title", b"<style"):
            continue
        idx = chunk.rfind(b" ")
        if idx >= 0:
            space = m.start() + idx + 1
        # Skip the "-->" a previous comment cut left, so each cut moves on.
        lo = m.start() + (3 if chunk.startswith(b"-->") else 0) + 1
        pos = m.end() - 1
        while pos > lo and (0x80 <= data[pos] < 0xC0):
            pos -= 1  # not inside a UTF-8 sequence
        amp = data.rfind(b"&", m.start(), pos + 1)
        if amp >= 0 and b";" not in data[amp:pos]:
            pos = amp  # not inside "&amp;"
        if pos > lo:
            text_pos = pos
    return space, text_pos


def compile_mjml(source: str, what: str) -> str:
    return finish_html(compile_raw(source, what), what)


def compile_raw(source: str, what: str) -> str:
    """mjml-python's HTML for ``source``, checked for leftover ``mj-`` tags but not yet folded."""
    try:
        # fonts={}: no web-font <link>, an outside fetch that would track readers.
        out = mjml.mjml2html(source, disable_comments=True, fonts={})
    except Exception as exc:  # mjml-python raises bare Python errors from Rust
        raise RenderError(what, f"MJML did not compile: {exc}") from exc
    # mjml-python passes unknown tags through silently: a typo would ship.
    leftover = _LEFTOVER_MJ.search(out)
    if leftover:
        raise RenderError(what, f"MJML left {leftover.group()!r} in the HTML (unknown or misplaced tag)")
    return out


def finish_html(out: str, what: str) -> str:
    """Fold ``out`` (compiled HTML) for a MIME body and check its longest line.

    Separate from :func:`compile_raw` because a skeleton's values change line
    lengths: folding must see the final text (see render.skeleton)."""
    return finish_html_sized(out, what)[0]


def finish_html_sized(out: str, what: str) -> tuple[str, int]:
    """:func:`finish_html` and the result's size in UTF-8 octets, known while folding."""
    out, longest, octets = _fold_sized(out)
    _check_folded(longest, what)
    if octets < 0:
        octets = len(out.encode("utf-8"))
    # A MIME body ends in a newline; ending with one keeps web and mail copies identical.
    return (out, octets) if out.endswith("\n") else (out + "\n", octets + 1)


def _check_folded(longest: int, what: str) -> None:
    if longest > MAX_LINE_OCTETS:
        raise RenderError(what, f"HTML has an unbreakable {longest}-octet line (an over-long URL?)")


def html_octets(out: str, what: str) -> int:
    """The size :func:`finish_html_sized` gives ``out``, for a caller that needs
    only that (a web copy's text, whose takes are the ones the HTML budget
    keeps): folded and checked the same way, but not joined or decoded back."""
    try:
        data = out.encode()
    except UnicodeEncodeError:
        return finish_html_sized(out, what)[1]
    folded, longest = _fold_encoded(data)
    _check_folded(longest, what)
    # Folding only adds newlines and comment marks; the last byte stays the last byte.
    octets = len(data) if folded is None else sum(map(len, folded)) + len(folded) - 1
    return octets if data.endswith(b"\n") else octets + 1


def longest_line(text: str) -> int:
    """Octets in the longest line (only lines that could be long are encoded)."""
    return max(
        (len(line.encode()) if len(line) > FOLD_AT // 4 and not line.isascii() else len(line) for line in text.split("\n")),
        default=0,
    )


def has_line_over(text: str, chars: int) -> bool:
    """Whether a line of ``text`` is longer than ``chars`` characters.

    One bounded ``str.find`` per line, which allocates nothing: splitting a
    5 KB web copy into its lines to measure them cost 10 µs, this 2 µs.
    """
    start, size = 0, len(text)
    while size - start > chars:
        end = text.find("\n", start, start + chars + 1)
        if end < 0:
            return True
        start = end + 1
    return False


def check_text_lines(text: str, what: str) -> None:
    # A line of at most a quarter of the limit in characters cannot reach it
    # in octets: only a text with a longer line has its lines encoded.
    if not has_line_over(text, MAX_LINE_OCTETS // 4):
        return
    longest = longest_line(text)
    if longest > MAX_LINE_OCTETS:
        raise RenderError(what, f"text has a {longest}-octet line (an over-long URL?)")

