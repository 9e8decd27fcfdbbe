"""Where templates are found: the user's override folder first, then the built-in ones.

Datasette-style: a user copies one template into ``paths.templates`` and
changes it; every other template still comes from the built-in folder. The
built-in folder is the package ``publisher.templates`` (the repository's
top-level ``templates/``, mapped into the wheel at build time), found with
importlib.resources so an installed wheel renders exactly as a checkout.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined


@functools.cache
def builtin_dir() -> Path:
    """The folder of the built-in templates (wheels install unzipped, so it is a real folder)."""
    folder = Path(str(importlib.resources.files("publisher.templates")))
    if not (folder / "email").is_dir():
        raise RuntimeError(f"built-in templates missing from {folder}: a broken install")
    return folder


def html_environment(dirs: tuple[str, ...]) -> Environment:
    """A Jinja2 environment for HTML pages searching ``dirs`` in order: autoescaped, strict, read once."""
    return Environment(
        loader=ChoiceLoader([FileSystemLoader(d) for d in dirs]),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )


@functools.lru_cache(maxsize=8)
def search_path(user: Path, sub: str = "") -> tuple[str, ...]:
    """The user's override folder (if it exists) before the built-in one; ``sub`` picks a subfolder (e.g. "web")."""
    builtin = builtin_dir()
    dirs = []
    if user.is_dir() and user.resolve() != builtin.resolve():
        dirs.append(str((user / sub).resolve()) if sub else str(user.resolve()))
    dirs.append(str(builtin / sub) if sub else str(builtin))
    return tuple(dirs)


@functools.lru_cache(maxsize=16)
def mirrored(dirs: tuple[str, ...], names: tuple[str, ...], sha256: str) -> bool:
    """Whether the templates ``names`` found in ``dirs`` are the sources a Python writer mirrors.

    The writers (render.story_mjml, story_text, story_html, archive_html) write what their
    templates would, faster; a user's override or an edit of a built-in file
    changes this digest, and the caller goes through Jinja2 instead.
    """
    loader = ChoiceLoader([FileSystemLoader(d) for d in dirs])
    env = Environment(loader=loader)
    digest = hashlib.sha256()
    for name in names:
        source, _, _ = loader.get_source(env, name)
        digest.update(source.encode() + b"\0")
    return digest.hexdigest() == sha256
