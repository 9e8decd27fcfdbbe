"""The ``publisher`` command (entry point ``publisher.cli:main``)."""

from . import briefs, delivery, publishing  # noqa: F401  (each registers its commands on main)
from .base import main

__all__ = ["main"]
