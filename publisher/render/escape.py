"""Jinja2's autoescape, for the renderers that write HTML in Python.

markupsafe's ``escape`` builds a Markup object per value; the writers call
this a hundred times per story, so plain text without a character to escape
is returned as it is and the rest is replaced in C. The five characters and
their references are markupsafe's (``&#39;`` and ``&#34;`` for the quotes).
"""

from __future__ import annotations

import re

_SPECIAL = re.compile("[&<>'\"]")


def e(value: object) -> str:
    """What ``{{ value }}`` writes with autoescape on (safe HTML as it is)."""
    html = getattr(value, "__html__", None)
    if html is not None:
        return str(html())
    text = value if type(value) is str else str(value)
    if _SPECIAL.search(text) is None:
        return text
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#39;").replace('"', "&#34;")
