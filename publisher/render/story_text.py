"""The story email's plain text, written by Python rather than Jinja2.

The plain-text template is a straight run of wrapped paragraphs; running it
through Jinja2 cost more than the email's HTML. :func:`story_text` writes the
same characters from the same view model (Jinja's ``trim_blocks`` and
``lstrip_blocks`` already applied by hand), and is used only while the
templates it mirrors are the ones it was written from: ``SOURCES_SHA256``
is their digest, so a user's override or an edit of the built-in files
falls back to Jinja2 (and ``tests/render/test_story_text.py`` says which).
"""

from __future__ import annotations

import functools
from typing import Any

from .text import TEXT_WIDTH, Refs, rich_text, underline_wrapped, wrap

TEMPLATES = ("email/story.txt.j2", "email/_footer.txt.j2")
SOURCES_SHA256 = "56511270e0c5ec8812e5fc561986fb32d4c1d3b5c8b3a220bb8c51a978a0a176"

# For the lines that repeat from story to story (the footer's reason and
# postal line are the site's; a coverage count line is one of a few dozen).
_wrap_repeated = functools.lru_cache(maxsize=512)(wrap)
_RULE = "-" * 70 + "\n"


def story_text(ctx: dict[str, Any], refs: Refs) -> str:
    """What ``email/story.txt.j2`` renders for ``ctx`` (before blank lines are collapsed)."""
    rich = rich_text(refs)
    ref = refs.ref
    out: list[str] = [ctx["site_title"]]
    if ctx["date_label"]:
        out.append(f" · {ctx['date_label']}")
    title = wrap(ctx["title"])
    out.append(f"\n\n{title}\n{underline_wrapped(title, '=')}\n")
    if ctx["dek"]:
        out.append(f"\n{wrap(ctx['dek'])}\n")
    out.append("\n")
    if ctx["counts_line"]:
        out.append(f"{ctx['counts_line']}\n")
    if ctx["summary"]:
        out.append(f"\nSUMMARY\n\n{rich(ctx['summary'])}\n")
    if ctx["why"]:
        out.append(f"\nWHY IT MATTERS\n\n{rich(ctx['why'])}\n")
    if ctx["watch"]:
        out.append("\nWHAT TO WATCH\n\n")
        for item in ctx["watch"]:
            out.append(rich(item, indent="  * ", subsequent="    ") + "\n")
    for section in ctx["sections"]:
        out.append(f"\n{wrap(str(section['title']).upper())}\n\n{rich(section['body'])}\n")
    coverage = ctx["coverage"]
    if coverage.total:
        _coverage(out, coverage, ref)
    related, entities = ctx["related"], ctx["entities"]
    if related or entities:
        out.append("\n")
        if related:
            out.append(wrap("Related: " + ", ".join(f"{item['label']} {ref(item['url'])}" for item in related)) + "\n")
        if entities:
            out.append(wrap("Entities: " + ", ".join(entities)) + "\n")
    out.append(f"\n\nRead the full story: {ref(ctx['story_url'])}\n\n")
    _footer(out, ctx, refs)
    return "".join(out)


def _coverage(out: list[str], coverage: Any, ref: Any) -> None:
    out.append(f"\nHOW THE WORLD COVERED IT\n\n{_wrap_repeated(coverage.counts_line)}\n")
    if coverage.regions:
        out.append(wrap(" · ".join([f"{region} {n}" for region, n in coverage.regions])) + "\n")
    for take in coverage.takes:
        head = f"{take.outlet} {ref(take.source)}" if take.source else take.outlet
        if take.region:
            head = f"{head} · {take.region}"
        if take.lens:
            head = f"{head} · {take.lens}"
        out.append(f"\n{wrap(head, TEXT_WIDTH, '* ', '  ')}\n{wrap(take.sentence, TEXT_WIDTH, '  ', '  ')}\n")
    if coverage.also:
        names = ", ".join([f"{take.outlet} {ref(take.source)}" if take.source else take.outlet for take in coverage.also])
        more = f" and {coverage.also_more} more" if coverage.also_more else ""
        out.append(f"\n{wrap('Also covered: ' + names + more)}\n")
    plural = "s" if coverage.total != 1 else ""
    out.append(f"\n{_wrap_repeated(f'See all {coverage.total} take{plural}: ' + ref(coverage.more_url))}\n")


def _footer(out: list[str], ctx: dict[str, Any], refs: Refs) -> None:
    out.append(_RULE)
    out.append(f"{_wrap_repeated(ctx['reason'])}\n\n")
    out.append(f"View in your browser: {ctx['browser_url']}\n")
    out.append(f"Manage subscription: {ctx['manage_url']}\n")
    out.append(f"Unsubscribe: {ctx['unsubscribe_url']}\n\n")
    out.append(f"{_wrap_repeated(ctx['postal_line'])}\n")
    if refs:
        out.append("\nLinks\n-----\n")
        out.append(refs.listing())
