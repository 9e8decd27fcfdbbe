"""The story's web page, written by Python rather than Jinja2.

``site/story.html`` (extending ``site/base.html``) cost more per build than
parsing the brief: a few hundred escape calls through markupsafe and the
template's loop machinery. :func:`story_html` writes the same characters
from the same view model (``trim_blocks``, ``lstrip_blocks`` and the
dropped final newline already applied by hand), escaped as autoescape does,
and is used only while the templates are the ones it was written from
(``SOURCES_SHA256``, a digest of their sources): a user's override or an
edit of the built-in files goes through Jinja2, and
``tests/render/test_story_html.py`` fails until this file is updated.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from typing import Any

from ..core.config import SiteConfig
from .coverage import LensGroup, TakeView
from .escape import e

TEMPLATES = ("site/story.html", "site/base.html")
SOURCES_SHA256 = "06cf0821ecdd960c7ad22739b18ad00996724009085b007a1b493ef8f5198bf2"

_STYLE = """<style>
:root { color-scheme: light dark; --fg: #1f2328; --muted: #57606a; --line: #d0d7de; --soft: #eaeef2; --link: #0b5cad; --bg: #ffffff; --brand: #0b3d6e; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e8eb; --muted: #a9b1ba; --line: #444c56; --soft: #2d333b; --link: #6cb6ff; --bg: #15181c; --brand: #0d2a45; } }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 17px/1.55 -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; overflow-wrap: anywhere; }
a { color: var(--link); }
.brand { background: var(--brand); color: #fff; }
.brand .in, main, footer { max-width: 760px; margin: 0 auto; padding: 0 20px; }
.brand .in { display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 18px; padding-top: 12px; padding-bottom: 12px; }
.brand a { color: #fff; }
.brand .name { font-size: 21px; font-weight: 700; text-decoration: none; margin-right: auto; }
.brand nav a { margin-left: 14px; font-size: 15px; }
.brand nav a:first-child { margin-left: 0; }
h1 { font-size: 30px; line-height: 1.2; margin: 26px 0 8px; }
h2 { font-size: 21px; line-height: 1.3; margin: 28px 0 8px; }
h3 { font-size: 16px; margin: 20px 0 6px; text-transform: uppercase; letter-spacing: .03em; color: var(--muted); }
.dek { font-size: 20px; color: var(--muted); margin: 0 0 8px; }
.muted, .meta { color: var(--muted); font-size: 15px; }
.stories { list-style: none; padding: 0; margin: 0; }
.stories li { border-top: 1px solid var(--soft); padding: 14px 0; }
.stories h2, .stories h3 { margin: 0 0 4px; font-size: 20px; text-transform: none; letter-spacing: 0; color: var(--fg); }
.stories h3 a, .stories h2 a { color: var(--fg); text-decoration: none; }
.stories p { margin: 2px 0; }
.regions span { white-space: nowrap; }
.chip { display: inline-block; border: 1px solid var(--line); border-radius: 10px; padding: 0 8px; margin: 0 4px 4px 0; font-size: 14px; white-space: nowrap; }
table.cov { width: 100%; border-collapse: collapse; font-size: 15px; }
.cov th, .cov td { text-align: start; vertical-align: top; padding: 8px 8px 8px 0; border-bottom: 1px solid var(--soft); }
.cov thead th { border-bottom: 2px solid var(--line); font-size: 14px; }
.cov .outlet { width: 30%; }
@media (max-width: 600px) {
  table.cov, .cov tbody, .cov tr, .cov th, .cov td { display: block; width: auto; }
  .cov thead { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
  .cov tr { border-bottom: 1px solid var(--soft); padding: 6px 0; }
  .cov th, .cov td { border: 0; padding: 0; }
}
form.inline { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin: 8px 0; }
button { font: inherit; padding: 6px 14px; border-radius: 6px; border: 1px solid var(--line); background: var(--brand); color: #fff; cursor: pointer; }
footer { border-top: 1px solid var(--line); margin-top: 40px; padding-top: 12px; padding-bottom: 30px; }
</style>
</head>
<body>
<header class="brand"><div class="in">
"""
_TABLE_HEAD = ('<table class="cov">\n<thead><tr><th scope="col" class="outlet">Outlet</th><th scope="col">Region · language'
               '</th><th scope="col">Take</th></tr></thead>\n<tbody>\n')
_LINKED = '<span class="muted">Linked coverage</span>'


def story_html(ctx: dict[str, Any]) -> str:
    """What ``site/story.html`` renders for ``ctx`` (the context site.story_page hands Jinja2)."""
    site, item = ctx["site"], ctx["item"]
    feeds = tuple((f["type"], f["label"], f["url"]) for f in ctx["feeds"])
    opening, site_title, subtitle, links, closing = page_frame(site, ctx["dir"], ctx["home"], feeds)
    out = [opening, e(item.title), " · ", site_title, '</title>\n<meta name="description" content="',
           e(item.dek) if item.dek else subtitle, '">\n<link rel="canonical" href="', e(ctx["canonical"]), links]
    _article(out, ctx)
    out.append(closing)
    return "".join(out)


@functools.lru_cache(maxsize=16)
def page_frame(site: SiteConfig, direction: str, home: str, feeds: tuple[tuple[str, str, str], ...]) -> tuple[str, str, str, str, str]:
    """The page around the story, the same for every story of a site: (the head up
    to the title, the escaped site title and subtitle, from the canonical link's
    end to <main>, from </main> on). Made once per site, not escaped again per page."""
    title = e(site.title)
    opening = (f'<!doctype html>\n<html lang="{e(site.language or "en")}" dir="{e(direction)}">\n<head>\n<meta charset="utf-8">\n'
               '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
               '<meta name="color-scheme" content="light dark">\n<title>')
    out = ['">']
    out.extend(f'<link rel="alternate" type="{e(kind)}" title="{e(label)}" href="{e(url)}">\n' for kind, label, url in feeds)
    out.append(_STYLE)
    if site.logo:
        out.append(f'<a class="name" href="{e(home)}"><img src="{e(site.logo)}" alt="{title}" height="32"></a>')
    else:
        out.append(f'<a class="name" href="{e(home)}">{title}</a>')
    out.append(f'<nav aria-label="Site"><a href="{e(site.url("archive/"))}">Archive</a><a href="{e(site.url("tags/"))}">Tags</a>'
               f'<a href="{e(site.url("subscribe"))}">Subscribe</a></nav>\n</div></header>\n<main>\n')
    links = " · ".join(f'<a href="{e(url)}">{e(label)}</a>' for _kind, label, url in feeds)
    closing = (f'</main>\n<footer>\n<p class="muted">{e(site.subtitle)}</p>\n<p class="muted">Follow in a feed reader: {links}'
               f' · <a href="{e(site.url("subscribe"))}">Subscribe by email</a> · <a href="{e(site.url("manage/"))}">'
               'Manage subscription</a></p>\n</footer>\n</body>\n</html>')
    return opening, title, e(site.subtitle), "".join(out), closing


@functools.lru_cache(maxsize=512)
def dated_meta(date: dt.date) -> str:
    """The meta line's <time> element: a site's stories share a few hundred dates."""
    return f'<p class="meta"><time datetime="{e(date.isoformat())}">{e(f"{date:%-d %B %Y}")}</time>'


def _article(out: list[str], ctx: dict[str, Any]) -> None:
    brief, item, counts = ctx["brief"], ctx["item"], ctx["counts"]
    out.append(f'<article>\n<h1 dir="auto">{e(item.title)}</h1>\n')
    if item.dek:
        out.append(f'<p class="dek" dir="auto">{e(item.dek)}</p>')
    out.append(f'{dated_meta(item.date)} · {e(counts)}</p>\n' if counts else f"{dated_meta(item.date)}</p>\n")
    if brief.summary:
        out.append(f"<h2>Summary</h2>\n{brief.summary.html}\n")
    if brief.why_it_matters:
        out.append(f"<h2>Why it matters</h2>\n{brief.why_it_matters.html}\n")
    if brief.what_to_watch:
        out.append(f'<h2>What to watch</h2>\n<ul>{"".join([f"<li>{w.html}</li>" for w in brief.what_to_watch])}</ul>\n')
    out.extend([f"<h2>{e(section.title)}</h2>\n{section.body.html}\n" for section in brief.sections])
    if ctx["groups"]:
        _coverage(out, ctx["regions"], ctx["lenses"], ctx["groups"])
    related, tags = ctx["related"], ctx["tags"]
    if related:
        links = "".join([f'<li><a href="{e(r["url"])}">{e(r["label"])}</a></li>' for r in related])
        out.append(f"<h2>Related stories</h2>\n<ul>{links}</ul>\n")
    if tags:
        chips = "".join([f'<a class="chip" href="{e(t["url"])}">{e(t["name"])}</a> ' for t in tags])
        out.append(f"<h2>Tags</h2>\n<p>{chips}</p>\n")
    if ctx["canonical"] != ctx["url"]:
        out.append(f'<p><a href="{e(ctx["canonical"])}">Read the original brief →</a></p>')
    out.append("</article>\n")


def _coverage(out: list[str], regions: Sequence[tuple[str, int]], lenses: Sequence[tuple[str, int]],
              groups: Sequence[LensGroup]) -> None:
    out.append('<h2 id="coverage">How the world covered it</h2>\n')
    if regions:
        spans = " · ".join([f'<span dir="auto">{e(region)}&nbsp;<strong>{e(n)}</strong></span>' for region, n in regions])
        out.append(f'<p class="regions">{spans}</p>')
    if lenses:
        chips = "".join([f'<span class="chip">{e(lens)}&nbsp;{e(n)}</span> ' for lens, n in lenses])
        out.append(f"<p>{chips}</p>")
    for group in groups:
        out.append(f"<h3>{e(group.label or 'Also covered')}</h3>\n{_TABLE_HEAD}")
        out.extend(map(_row, group.rows))
        out.extend(map(_row, group.folded))
        out.append("</tbody>\n</table>\n")


def _row(t: TakeView) -> str:
    outlet = f'<a href="{e(t.source)}">{e(t.outlet)}</a>' if t.source else e(t.outlet)
    where, attrs = _where(t.region, t.language), _attrs(t.lang, t.dir)
    if t.quote:
        italic = ' style="font-style:italic"' if t.italic else ""
        return (f'<tr><th scope="row" class="outlet">{outlet}</th><td>{where}</td><td{attrs}>{t.text_html or _LINKED}'
                f"<blockquote{attrs}{italic}>{e(t.quote)}</blockquote></td></tr>\n")
    return f'<tr><th scope="row" class="outlet">{outlet}</th><td>{where}</td><td{attrs}>{t.text_html or _LINKED}</td></tr>\n'


# A brief's takes come from a few regions in a few languages: their cells are
# escaped once, not once per row.
@functools.lru_cache(maxsize=1024, typed=True)
def _where(region: str, language: str) -> str:
    return f"{e(region)} · {e(language)}" if language else e(region)


@functools.lru_cache(maxsize=256, typed=True)
def _attrs(lang: str, direction: str) -> str:
    return f' lang="{e(lang)}" dir="{e(direction)}"' if lang else f' dir="{e(direction)}"'
