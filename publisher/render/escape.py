"""Jinja2's autoescape, for the renderers that write HTML in Python.

markupsafe's ``escape`` builds a Markup object per value; the writers call
this a hundred times per story, so a plain ``str`` goes straight to
markupsafe's C routine behind ``escape`` (``_escape_inner``, found by
feature detection; the regex path below is the fallback and the reference).
The five characters and their references are markupsafe's (``&#39;`` and
``&#34;`` for the quotes).
"""

from __future__ import annotations

import re
from collections.abc import Callable

_SPECIAL = re.compile("[&<>'\"]")


def _escape_str(text: str) -> str:
    if _SPECIAL.search(text) is None:
        return text
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#39;").replace('"', "&#34;")


def _speedup() -> Callable[[str], str]:
    try:
        from markupsafe._speedups import _escape_inner  # noqa: PLC0415 (optional C routine)
    except ImportError:  # markupsafe without its C extension, or a release that renamed it
        return _escape_str
    fast: Callable[[str], str] = _escape_inner
    # Trusted only when it writes exactly what the reference does.
    sample = "a&b<c>d'e\"f é 中 \U0001f44d"
    return fast if fast(sample) == _escape_str(sample) and fast("plain") == "plain" else _escape_str


escape_str = _speedup()


def e(value: object) -> str:
    """What ``{{ value }}`` writes with autoescape on (safe HTML as it is)."""
    if type(value) is str:
        return escape_str(value)
    if type(value) is int:  # counts: digits and a sign need no escaping
        return str(value)
    html = getattr(value, "__html__", None)
    if html is not None:
        return str(html())
    return escape_str(str(value))
