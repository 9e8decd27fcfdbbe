"""An archive page, written by Python rather than Jinja2.

A build writes every archive page again (a hundred stories each: 100 pages
at 10k briefs), in the serial tail after its workers are done, where
Jinja2's loop and escape machinery cost about 1 ms a page.
:func:`archive_html` writes the same characters from the same context
(``trim_blocks`` and ``lstrip_blocks`` applied by hand, escaped as
autoescape does), sharing the page around it with render.story_html, and
is used only while ``site/archive.html`` and ``site/base.html`` are the
templates it was written from (``SOURCES_SHA256``): an override or an edit
goes through Jinja2, and ``tests/render/test_archive_html.py`` fails until
this file is updated.
"""

from __future__ import annotations

from typing import Any

from .escape import e
from .story_html import dated_meta, page_frame

TEMPLATES = ("site/archive.html", "site/base.html")
SOURCES_SHA256 = "a954d49968dbde843b47756aff4f7b639b3ce78e32fcf4bc9c2a5bafcc1088ec"


def archive_html(ctx: dict[str, Any]) -> str:
    """What ``site/archive.html`` renders for ``ctx`` (the context site.archive_page hands Jinja2)."""
    site, number, older, newer = ctx["site"], ctx["number"], ctx["older"], ctx["newer"]
    feeds = tuple((f["type"], f["label"], f["url"]) for f in ctx["feeds"])
    opening, site_title, subtitle, links, closing = page_frame(site, ctx["dir"], ctx["home"], feeds)
    heading = f"Archive, page {e(str(number))}" if newer else "Archive"
    out = [opening, heading, " · ", site_title, '</title>\n<meta name="description" content="', subtitle, '">\n']
    if older:
        out.append(f'<link rel="prev" href="{e(older)}">\n')
    if newer:
        out.append(f'<link rel="next" href="{e(newer)}">\n')
    out += [links[2:], f"<h1>{heading}</h1>\n"]  # links: from the end of a link element ('">') on
    for month, items in ctx["months"]:
        out.append(f'<section>\n<h2>{e(month)}</h2>\n<ul class="stories">\n')
        out.extend(f'<li><h3><a href="{e(item.url)}">{e(item.title)}</a></h3>{dated_meta(item.date)}</p></li>\n' for item in items)
        out.append("</ul>\n</section>\n")
    if not ctx["months"]:
        out.append("<p>No stories yet.</p>\n")
    if older or newer:
        out.append('<nav class="pages" aria-label="Archive pages">')
        if newer:
            out.append(f'<a href="{e(newer)}" rel="next">← Newer stories</a>')
        if older and newer:
            out.append(" · ")
        if older:
            out.append(f'<a href="{e(older)}" rel="prev">Older stories →</a>')
        out.append("</nav>\n")
    out.append(closing)
    return "".join(out)
