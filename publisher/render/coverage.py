""""How the world covered it", shared by the email, the public site and the feeds.

What a reader sees of a brief's takes: the distribution of regions and
lenses, a short curated pick of takes that shows the *spread* of the
coverage (round-robin across lenses, then regions), clean labels (no
"unlabelled" lens, full language names) and each take's language and
direction so screen readers and bidi layout get them right.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import NamedTuple

from ..briefs.model import Brief, Lens, Take
from ..core.memo import IdentityMemo
from ..core.urls import is_http_url
from .text import clean_line

# Names editors use for "no lens"; such takes go under "Also covered" with no header word.
_NO_LENS = {"", "unlabelled", "unlabeled", "other", "none", "misc"}

# Primary language subtags written right to left.
RTL = {"ar", "he", "iw", "fa", "ur", "yi", "ps", "sd", "ug", "dv", "ckb"}
# Scripts without a true italic: emphasis there is never synthesised.
NO_ITALIC = RTL | {"zh", "ja", "ko", "th", "hi", "bn", "ta", "te", "ml", "kn", "mr", "gu", "pa", "si", "my", "km", "lo"}

LANGUAGE_NAMES = {
    "ar": "Arabic", "bn": "Bengali", "cs": "Czech", "da": "Danish", "de": "German", "el": "Greek",
    "en": "English", "es": "Spanish", "fa": "Persian", "fi": "Finnish", "fr": "French", "he": "Hebrew",
    "hi": "Hindi", "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese", "ko": "Korean",
    "ms": "Malay", "nl": "Dutch", "no": "Norwegian", "pl": "Polish", "pt": "Portuguese", "ro": "Romanian",
    "ru": "Russian", "sv": "Swedish", "sw": "Swahili", "ta": "Tamil", "th": "Thai", "tr": "Turkish",
    "uk": "Ukrainian", "ur": "Urdu", "vi": "Vietnamese", "zh": "Chinese",
}

KNOWN = set(LANGUAGE_NAMES) | RTL | NO_ITALIC

MAX_TAKE_WORDS = 25
_MAX_TAKE_CHARS = 160  # for scripts without spaces between words
# The end of the first sentence: a stop, and for . ! ? whitespace then a capital
# or a digit, perhaps after an opening quote or bracket (see _sentence_end).
_CJK_STOPS = "。！？"
_STOP_CHAR = re.compile("[.!?" + _CJK_STOPS + "]")
_AFTER_STOP = re.compile(r"\s+[\"“‘(\[]?[A-Z0-9]")
# The start of an http(s) URL whose host is plain (letters, digits, dots and
# hyphens, then a port, a path, a query, a fragment or the end): urlsplit would
# find that host, so is_http_url holds without it. Everything briefs.inline's
# PLAIN_HTTP_URL accepts matches, and only the host is scanned, not the path.
_HTTP_HOST = re.compile(r"https?://[A-Za-z0-9][A-Za-z0-9.-]*(?::\d{1,5})?(?:[/?#]|$)")
_LANG_TAG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def lang_tag(language: str) -> str:
    """A BCP 47 tag for ``lang=`` from what the brief wrote, or '' when it is not a
    language we know (a wrong ``lang`` is worse than none: it picks the wrong voice)."""
    value = clean_line(language)
    if not _LANG_TAG.match(value):
        return ""
    return value if value.split("-")[0].lower() in KNOWN else ""


def primary(language: str) -> str:
    value = clean_line(language)
    return value.split("-")[0].lower() if _LANG_TAG.match(value) else ""


def direction(language: str) -> str:
    return "rtl" if primary(language) in RTL else "ltr"


def language_name(language: str) -> str:
    """``de`` → ``German``; a name the brief spelt out stays as written."""
    key = primary(language)
    if key in LANGUAGE_NAMES:
        return LANGUAGE_NAMES[key]
    return clean_line(language)


def italic_ok(language: str) -> bool:
    return primary(language) not in NO_ITALIC


def lens_label(lens: Lens) -> str:
    """The lens name readers see; '' for "unlabelled" and the like."""
    name = clean_line(lens.name)
    return "" if name.casefold() in _NO_LENS else name


def first_sentence(text: str, words: int = MAX_TAKE_WORDS) -> str:
    """The take's first sentence, at most ``words`` words (an ellipsis marks a cut)."""
    flat = text if _is_clean(text) else clean_line(text)
    end = _sentence_end(flat)
    sentence = (flat[:end] if end is not None else flat).strip()
    # clean_line leaves single spaces between words as the only whitespace:
    # ``words`` spaces or more is more than ``words`` words, and the first
    # ``words`` of them are found without splitting the rest.
    if sentence.count(" ") >= words:
        sentence = " ".join(sentence.split(" ", words)[:words]).rstrip(",;:") + "…"
    elif len(sentence) > _MAX_TAKE_CHARS:
        sentence = sentence[: _MAX_TAKE_CHARS - 1] + "…"
    return sentence


def _is_clean(value: str) -> bool:
    """Whether ``clean_line(value)`` is ``value``: printable (so its only
    whitespace is the space), no two spaces in a row, none at either end.
    A long ASCII value is checked as bytes, several times faster than
    str.isprintable (ASCII's unprintable characters are its controls)."""
    if "  " in value or value[:1] == " " or value[-1:] == " ":
        return False
    if len(value) > 80 and value.isascii():
        raw = value.encode("ascii")
        return len(raw.translate(None, _ASCII_CONTROLS)) == len(raw)
    return value.isprintable()


_ASCII_CONTROLS = bytes(range(0x20)) + b"\x7f"


def _sentence_end(flat: str) -> int | None:
    """Where the first stop ends: 。！？, or . ! ? before whitespace and a capital
    or a digit. The stop character is found by a plain scan and the lookahead
    tried there; one regex with the lookahead in it (the reference kept in
    tests/render/test_render_fast_paths.py) searched a take without a stop
    several times slower."""
    pos = 0
    if flat.isascii():
        # Only . ! ? can stop an ASCII sentence: the next '.', then a '!' or a '?' before it.
        size = len(flat)
        while True:
            stop = flat.find(".", pos)
            if stop < 0:
                stop = size
            bang = flat.find("!", pos, stop)
            if bang >= 0:
                stop = bang
            ask = flat.find("?", pos, stop)
            if ask >= 0:
                stop = ask
            if stop == size:
                return None
            pos = stop + 1
            if _AFTER_STOP.match(flat, pos):
                return pos
    while (m := _STOP_CHAR.search(flat, pos)) is not None:
        pos = m.end()
        if m.group() in _CJK_STOPS or _AFTER_STOP.match(flat, pos):
            return pos
    return None


class TakeView(NamedTuple):
    """One take as readers see it.

    A named tuple, not a frozen dataclass: a build makes one for every take
    (17 a brief), and a frozen dataclass's ``__init__``, interpreted even in
    the compiled module, sets each field through ``object.__setattr__`` (1.1 µs
    a view against 0.26 µs). The compiled renderers read its fields by index.
    """

    outlet: str
    region: str
    lang: str  # BCP 47 tag, or ''
    dir: str  # "ltr" | "rtl"
    language: str  # full name, or ''
    lens: str  # label, or '' (unlabelled)
    sentence: str  # first sentence, ≤ 25 words; '' for a take without text
    text_html: str  # the whole take, safe HTML from the parser
    quote: str | None
    italic: bool
    source: str | None


@functools.lru_cache(maxsize=1024)
def _language(language: str) -> tuple[str, str, str, bool]:
    # A brief names a handful of languages across all its takes.
    return lang_tag(language), direction(language), language_name(language), italic_ok(language)


def take_view(take: Take, lens: Lens) -> TakeView:
    return _take_view(take, lens_label(lens))


def _take_view(take: Take, label: str) -> TakeView:
    lang, dir_, language, italic = _language(take.language)
    outlet, region, quote, source, text = take.outlet, take.region, take.quote, take.source, take.text
    plain = text.text
    return TakeView(
        # Outlets and regions repeat across takes and briefs: cleaned once each.
        (_clean_short(outlet) if len(outlet) <= _SHORT else clean_line(outlet)) or "Unnamed outlet",
        _clean_short(region) if len(region) <= _SHORT else clean_line(region),
        lang,
        dir_,
        language,
        label,
        # ``if text`` (Rich.__bool__: text.strip() is not empty) without its call.
        first_sentence(plain) if plain and not plain.isspace() else "",
        text.html,
        (quote if _is_clean(quote) else clean_line(quote)) if quote else None,
        italic,
        # The parser keeps only http(s) sources; the plain shape needs no urlsplit.
        source if source and (_HTTP_HOST.match(source) or is_http_url(source)) else None,
    )


# clean_line of a short field, remembered (a longer one is cleaned each time: the memo keeps no large text).
_SHORT = 64
_clean_short = functools.lru_cache(maxsize=2048)(clean_line)


class LensGroup(NamedTuple):  # a named tuple for the reason TakeView is
    label: str  # '' for takes without a lens
    rows: tuple[TakeView, ...]  # takes with text
    folded: tuple[TakeView, ...]  # takes that are only an outlet and a link


@dataclass(frozen=True)
class BriefCoverage:
    """Everything readers see of one brief's takes, built once per Brief and
    shared by the email (HTML and text), the web page and the feed entry."""

    groups: tuple[LensGroup, ...]
    lenses: tuple[tuple[str, int], ...]  # labelled lenses and their takes, most first
    regions: tuple[tuple[str, int], ...]  # regions and their takes, most first
    counts_line: str
    also: tuple[TakeView, ...]  # outlet-only takes across all lenses
    # pick(k) by k: the email asks once per size it tries, the digest and page for 2.
    _picks: dict[int, tuple[TakeView, ...]] = field(default_factory=dict, compare=False, repr=False)

    def pick(self, k: int) -> tuple[TakeView, ...]:
        hit = self._picks.get(k)
        if hit is None:
            hit = self._picks[k] = _pick(self.groups, k)
        return hit


# The take rows of one brief are built once and shared by the email (its pick
# and "also covered"), the web page and the feed entry. Keyed by the identity
# of the brief's lenses tuple, which is all they depend on: a fresh parse is a
# new tuple, so nothing stale is ever served and nothing is hashed.
_MEMO: IdentityMemo[BriefCoverage] = IdentityMemo(512)


def of(brief: Brief) -> BriefCoverage:
    """The brief's coverage, from the memo when this Brief was seen."""
    owners = (brief.lenses,)
    hit = _MEMO.get(owners)
    if hit is None:
        hit = _build(brief.lenses)
        _MEMO.put(owners, (), hit)
    return hit


def groups(brief: Brief) -> tuple[LensGroup, ...]:
    """Every take grouped by lens; labelled lenses first, unlabelled ones last."""
    return of(brief).groups


def _build(lenses: tuple[Lens, ...]) -> BriefCoverage:
    labelled: list[LensGroup] = []
    unlabelled: list[LensGroup] = []  # last, in brief order (what a stable sort by label == "" gave)
    also: list[TakeView] = []  # the labelled groups' outlet-only takes; the unlabelled ones' join last
    also_last: list[TakeView] = []
    # Takes per region as written (Brief.region_distribution), with the name its views show.
    region_n: dict[str, int] = {}
    region_name: dict[str, str] = {}
    # Takes per labelled lens; a label's first lens, takes or not, orders ties.
    lens_n: dict[str, int] = {}
    first: dict[str, int] = {}
    n_takes = 0
    for index, lens in enumerate(lenses):
        label = lens_label(lens)
        if label not in first:
            first[label] = index
        rows: list[TakeView] = []
        folded: list[TakeView] = []
        for take in lens.takes:
            view = _take_view(take, label)
            (rows if view.sentence else folded).append(view)
            region = take.region
            if region:
                region_n[region] = region_n.get(region, 0) + 1
                region_name[region] = view.region
        count = len(rows) + len(folded)
        n_takes += count
        if label:
            labelled.append(LensGroup(label, tuple(rows), tuple(folded)))
            also += folded
            if count:
                lens_n[label] = lens_n.get(label, 0) + count
        else:
            unlabelled.append(LensGroup(label, tuple(rows), tuple(folded)))
            also_last += folded
    # sorted() is stable and the dicts keep first-seen order, so ties keep it; blank names are left out.
    lens_counts = tuple(sorted(lens_n.items(), key=lambda kv: (-kv[1], first[kv[0]])))
    regions = tuple((region_name[r], n) for r, n in sorted(region_n.items(), key=lambda kv: -kv[1]) if region_name[r])
    return BriefCoverage(
        groups=(*labelled, *unlabelled),
        lenses=lens_counts,
        regions=regions,
        counts_line=_counts_line(n_takes, len(lens_counts), len(regions)),
        also=(*also, *also_last),
    )


def capped(all_groups: tuple[LensGroup, ...], limit: int) -> tuple[tuple[LensGroup, ...], int]:
    """The groups cut to their first ``limit`` takes in order, and how many were left out."""
    if sum(len(g.rows) + len(g.folded) for g in all_groups) <= limit:
        return tuple(g for g in all_groups if g.rows or g.folded), 0  # nothing cut: the groups themselves
    out: list[LensGroup] = []
    left = limit
    hidden = 0
    for g in all_groups:
        rows, folded = g.rows[: max(left, 0)], g.folded[: max(left - len(g.rows), 0)]
        left -= len(rows) + len(folded)
        hidden += len(g.rows) - len(rows) + len(g.folded) - len(folded)
        if rows or folded:
            out.append(LensGroup(g.label, rows, folded))
    return tuple(out), hidden


def region_counts(brief: Brief) -> list[tuple[str, int]]:
    return list(of(brief).regions)


def lens_counts(brief: Brief) -> list[tuple[str, int]]:
    """Labelled lenses with their number of takes, most first (brief order on ties)."""
    return list(of(brief).lenses)


def counts_line(brief: Brief) -> str:
    """``17 takes · 6 lenses · 8 regions`` without zero counts ('' without takes)."""
    return of(brief).counts_line


def _counts_line(n_takes: int, n_lenses: int, n_regions: int) -> str:
    if not n_takes:
        return ""
    parts = [f"{n_takes} take{'s' if n_takes != 1 else ''}"]
    if n_lenses:
        parts.append(f"{n_lenses} lens{'es' if n_lenses != 1 else ''}")
    if n_regions:
        parts.append(f"{n_regions} region{'s' if n_regions != 1 else ''}")
    return " · ".join(parts)


def pick(brief: Brief, k: int) -> list[TakeView]:
    """``k`` takes with text, round-robin across lenses, then regions.

    Each round takes one from every lens that has any left (labelled lenses
    first), preferring within a lens a region not shown yet; so the first
    ``k`` rows come from ``k`` different lenses whenever there are that many.
    """
    return list(of(brief).pick(k))


def _pick(all_groups: tuple[LensGroup, ...], k: int) -> tuple[TakeView, ...]:
    queues: list[list[TakeView]] = [list(g.rows) for g in all_groups if g.rows]
    shown_regions: set[str] = set()
    chosen: list[TakeView] = []
    while len(chosen) < k and any(queues):
        for queue in queues:
            if not queue or len(chosen) == k:
                continue
            index = next((i for i, v in enumerate(queue) if v.region not in shown_regions), 0)
            view = queue.pop(index)
            shown_regions.add(view.region)
            chosen.append(view)
    return tuple(chosen)


def also_covered(brief: Brief) -> tuple[TakeView, ...]:
    """Takes that are only an outlet and a link, across all lenses."""
    return of(brief).also
