"""The story email's MJML, written by Python rather than Jinja2.

Rendering ``email/story.mjml.j2`` and its partials through Jinja2 cost more
than compiling the result (see render.skeleton). :func:`story_mjml` writes
the same characters from the same view model, escaped as autoescape does,
and is used only while the templates are the ones it was written from
(``SOURCES_SHA256``, a digest of their sources): a user's override or an
edit of the built-in files goes through Jinja2, and
``tests/render/test_story_mjml.py`` fails until this file is updated.
"""

from __future__ import annotations

from typing import Any

from .escape import e
from .skeleton import OWN

TEMPLATES = (
    "email/story.mjml.j2", "email/_head.mjml.j2", "email/_preheader.mjml.j2", "email/_masthead.mjml.j2",
    "email/_coverage.mjml.j2", "email/_footer.mjml.j2",
)
SOURCES_SHA256 = "49ad3fd7207b283eb9caaeacde63a471d4ba264005cb2ceee848c8d008272fec"

_HEAD_OPEN = "<mj-head>\n  <mj-title>"
_HEAD = """</mj-title>
  <mj-raw>
    <meta name="color-scheme" content="light dark">
    <meta name="supported-color-schemes" content="light dark">
  </mj-raw>
  <mj-attributes>
    <mj-all font-family="-apple-system, BlinkMacSystemFont, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif" />
    <mj-text font-size="16px" line-height="1.5" color="#1f2328" padding="4px 20px" align="{align}" css-class="dm-text" />
    <mj-section padding="0" direction="{dir}" />
    <mj-divider border-width="1px" border-color="#d0d7de" padding="12px 20px" />
  </mj-attributes>
  <mj-raw>
<style type="text/css">
:root {{ color-scheme: light dark; supported-color-schemes: light dark; }}
a {{ color: #0b5cad; }}
.dm-text div {{ overflow-wrap: anywhere; word-break: break-word; }}
</style>
<style type="text/css">
@media (prefers-color-scheme: dark) {{
  body, .dm-body, .dm-body > div {{ background-color: #15181c !important; }}
  .dm-text div, .dm-text td, .dm-text th, .dm-text p, .dm-text li, .dm-text strong, .dm-text h1, .dm-text h2 {{ color: #e6e8eb !important; }}
  .dm-text .muted, .dm-muted div {{ color: #a9b1ba !important; }}
  .dm-text .take, .dm-text .chip {{ border-color: #444c56 !important; }}
  .dm-brand, .dm-brand div {{ background-color: #0d2a45 !important; }}
  a, .dm-text a {{ color: #6cb6ff !important; }}
}}
</style>
<style type="text/css">
[data-ogsc] .dm-text div, [data-ogsc] .dm-text p, [data-ogsc] .dm-text h1, [data-ogsc] .dm-text h2 {{ color: #e6e8eb !important; }}
[data-ogsc] a {{ color: #6cb6ff !important; }}
[data-ogsb] .dm-body {{ background-color: #15181c !important; }}
</style>
<!--[if mso]>
<style type="text/css">
body, table, td, div, p, a, li, h1, h2 {{ font-family: 'Segoe UI', Arial, sans-serif !important; }}
ul, ol {{ margin: {list_margin} !important; }}
</style>
<![endif]-->
  </mj-raw>
</mj-head>
"""
_PREHEADER_PAD = "&#847;&zwnj;&nbsp; " * 30
_H2 = '<h2 style="font-size:20px;line-height:1.3;margin:10px 0 2px">'
_LINK = 'style="color:#0b5cad"'


class Pieces:
    """The MJML in pieces (``parts``): literal markup, and (``slots``: index, element) the
    body of each ``<mj-text>``, ``<mj-raw>`` and ``<mj-title>``, where
    render.skeleton.split would cut it; so the skeleton needs no re-scan.

    It holds a list rather than being one: mypyc (publisher.native) compiles
    this module, and a compiled class cannot subclass ``list``."""

    __slots__ = ("parts", "slots")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.slots: list[tuple[int, str]] = []

    def append(self, markup: str) -> None:
        self.parts.append(markup)

    def body(self, kind: str, value: str) -> None:
        self.slots.append((len(self.parts), kind))
        self.parts.append(value)

    def text(self, open_tag: str, value: str, close: str = "</mj-text>\n", kind: str = "text") -> None:
        """``open_tag`` (ending in ``<mj-text …>``), the body, then ``close``."""
        self.parts.append(open_tag)
        self.body(kind, value)
        self.parts.append(close)

    def own(self, open_tag: str, value: str, close: str = "</mj-text>\n") -> None:
        """:meth:`text` for a body whose only tags are this module's, written in
        the form mrml keeps (render.skeleton.OWN): not checked tag by tag."""
        self.text(open_tag, value, close, OWN)


def story_mjml(ctx: dict[str, Any]) -> str:
    """What ``email/story.mjml.j2`` renders for ``ctx``."""
    return "".join(story_pieces(ctx).parts)


def story_pieces(ctx: dict[str, Any]) -> Pieces:
    """:func:`story_mjml` before joining, its bodies marked."""
    out = Pieces()
    out.append(f'<mjml lang="{e(ctx["lang"])}" dir="{e(ctx["dir"])}">\n{_HEAD_OPEN}')
    out.body("title", e(ctx["subject"]))
    out.append(_HEAD.format(align=e(ctx["align"]), dir=e(ctx["dir"]), list_margin=e(ctx["list_margin"])))
    out.append('<mj-body width="600px" background-color="#ffffff" css-class="dm-body">\n')
    out.append("<mj-raw>")
    out.body(OWN, '<div style="display:none;max-height:0;max-width:0;opacity:0;overflow:hidden;mso-hide:all">'
                  f"{e(ctx['preheader'])}{_PREHEADER_PAD}</div>")
    out.append("</mj-raw>\n")
    _masthead(out, ctx)
    out.append("<mj-section>\n  <mj-column>\n")
    out.own('    <mj-text font-size="26px" line-height="1.25" padding="16px 20px 6px">',
            f'<h1 style="font-size:26px;line-height:1.25;margin:0;font-weight:700">{e(ctx["title"])}</h1>')
    if ctx["dek"]:
        out.own('    <mj-text font-size="18px" line-height="1.4" color="#424a53" padding="0 20px 6px" '
                'css-class="dm-text dm-muted">', e(ctx["dek"]))
    if ctx["counts_line"]:
        out.own('    <mj-text font-size="14px" color="#57606a" padding="0 20px 6px" css-class="dm-text dm-muted">',
                f'<strong>{e(ctx["counts_line"])}</strong>')
    if ctx["summary"]:
        out.text("    <mj-text>", f"{_H2}Summary</h2>{e(ctx['summary'])}")
    if ctx["why"]:
        out.text("    <mj-text>", f"{_H2}Why it matters</h2>{e(ctx['why'])}")
    if ctx["watch"]:
        items = "".join(f'<li style="margin:0 0 4px">{e(item)}</li>' for item in ctx["watch"])
        out.text("    <mj-text>", f'{_H2}What to watch</h2><ul style="margin:{e(ctx["list_margin"])};padding:0">{items}</ul>')
    for section in ctx["sections"]:
        out.text("    <mj-text>", f"{_H2}{e(section['title'])}</h2>{e(section['body'])}")
    if ctx["coverage"].total:
        _coverage(out, ctx["coverage"])
    _related(out, ctx)
    out.own('    <mj-text padding="14px 20px 6px">', f'<a href="{e(ctx["story_url"])}" style="color:#0b5cad;'
            'font-weight:700;font-size:17px">Read the full story →</a>', "</mj-text>\n  </mj-column>\n</mj-section>\n")
    _footer(out, ctx)
    out.append("</mj-body>\n</mjml>\n")
    return out


def _masthead(out: Pieces, ctx: dict[str, Any]) -> None:
    out.append('<mj-section background-color="#0b3d6e" css-class="dm-brand" padding="0">\n  <mj-column>\n')
    home, title = e(ctx["home_url"]), e(ctx["site_title"])
    if ctx["logo"]:
        out.text('    <mj-text padding="14px 20px 2px" css-class="dm-brand-text">', f'<a href="{home}" style="color:#ffffff;'
                 f'text-decoration:none"><img src="{e(ctx["logo"])}" alt="{title}" width="140" style="display:block;'
                 'border:0;max-width:140px;height:auto;color:#ffffff;font-size:20px;font-weight:700"></a>')
    else:
        out.own('    <mj-text font-size="20px" font-weight="700" line-height="1.2" color="#ffffff" padding="14px 20px 2px" '
                'css-class="dm-brand-text">', f'<a href="{home}" style="color:#ffffff;text-decoration:none">{title}</a>')
    if ctx["date_label"]:
        out.own('    <mj-text font-size="13px" line-height="1.3" color="#ffffff" padding="0 20px 12px" '
                'css-class="dm-brand-text">', e(ctx["date_label"]))
    else:
        out.append('    <mj-spacer height="10px" />\n')
    out.append("  </mj-column>\n</mj-section>\n")


def _coverage(out: Pieces, c: Any) -> None:
    head = ['<h2 style="font-size:20px;line-height:1.3;margin:0 0 4px">How the world covered it</h2>\n'
            f'<p class="muted" style="margin:0 0 6px;font-size:14px;color:#57606a">{e(c.counts_line)}</p>\n']
    if c.regions:
        spans = " · ".join(f'<span dir="auto" style="white-space:nowrap">{e(region)}&nbsp;<strong>{e(n)}</strong></span>'
                           for region, n in c.regions)
        head.append(f'<p class="regions" style="margin:0 0 6px;font-size:14px;line-height:1.6">{spans}</p>\n')
    if c.lenses:
        chips = "".join('<span class="chip" style="display:inline-block;border:1px solid #d0d7de;border-radius:10px;'
                        f'padding:0 8px;margin:0 4px 4px 0;white-space:nowrap">{e(lens)}&nbsp;{e(n)}</span> '
                        for lens, n in c.lenses)
        if c.lenses_more:
            chips += (f'<span class="muted" style="color:#57606a;white-space:nowrap">+{e(c.lenses_more)} more '
                      f'lens{"es" if c.lenses_more != 1 else ""}</span>')
        head.append(f'<p class="lenses" style="margin:0 0 4px;font-size:13px;line-height:1.9">{chips}</p>\n')
    out.own('    <mj-text padding="14px 20px 0">', "".join(head))
    if c.takes:
        out.own('    <mj-text padding="2px 20px 0">', "".join(map(_take, c.takes)))
    if c.also:
        names = ", ".join(_outlet(t) for t in c.also)
        more = f" and {e(c.also_more)} more" if c.also_more else ""
        out.own('    <mj-text font-size="14px" padding="4px 20px 0">', '<p style="margin:0;border-top:1px solid #eaeef2;'
                f'padding-top:8px">Also covered: {names}{more}</p>')
    out.own('    <mj-text padding="8px 20px 6px">', f'<a href="{e(c.more_url)}" style="color:#0b5cad;font-weight:600">'
            f'See all {e(c.total)} take{"s" if c.total != 1 else ""} →</a>')


def _outlet(t: Any) -> str:
    return f'<a href="{e(t.source)}" {_LINK}>{e(t.outlet)}</a>' if t.source else e(t.outlet)


def _take(t: Any) -> str:
    region = f" · {e(t.region)}" if t.region else ""
    lens = f' <span class="muted" style="color:#57606a">· {e(t.lens)}</span>' if t.lens else ""
    lang = f' lang="{e(t.lang)}"' if t.lang else ""
    return ('<div class="take" style="border-top:1px solid #eaeef2;padding:8px 0"><p style="margin:0;font-size:14px;'
            f'line-height:1.4"><strong>{_outlet(t)}</strong>{region}{lens}</p><p{lang} dir="{e(t.dir)}" '
            f'style="margin:2px 0 0;font-size:15px;line-height:1.45">{e(t.sentence)}</p></div>')


def _related(out: Pieces, ctx: dict[str, Any]) -> None:
    related, entities = ctx["related"], ctx["entities"]
    if not (related or entities):
        return
    out.append("    <mj-divider />\n")
    if related:
        links = " · ".join(f'<a href="{e(item["url"])}" {_LINK}>{e(item["label"])}</a>' for item in related)
        out.own('    <mj-text font-size="14px">', f"<strong>Related:</strong> {links}")
    if entities:
        out.own('    <mj-text font-size="14px">', f'<strong>Entities:</strong> {" · ".join(e(x) for x in entities)}')


def _footer(out: Pieces, ctx: dict[str, Any]) -> None:
    out.own('<mj-section>\n  <mj-column>\n    <mj-divider />\n    <mj-text font-size="13px" color="#57606a" '
            'css-class="dm-text dm-muted">',
            f'\n      <p class="muted" style="margin:0 0 8px">{e(ctx["reason"])}</p>\n'
            f'      <p class="muted" style="margin:0 0 8px"><a href="{e(ctx["browser_url"])}" {_LINK}>View in your browser</a>'
            f' · <a href="{e(ctx["manage_url"])}" {_LINK}>Manage subscription</a> · <a href="{e(ctx["unsubscribe_url"])}" '
            f'{_LINK}>Unsubscribe</a></p>\n      <p class="muted" style="margin:0 0 20px">{e(ctx["postal_line"])}</p>\n    ',
            "</mj-text>\n  </mj-column>\n</mj-section>\n")
