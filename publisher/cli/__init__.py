"""The ``publisher`` command (entry point ``publisher.cli:main``)."""

from . import briefs, delivery, publishing, scale
from .base import main

# Each module registers its commands on ``main`` when imported; ``scale`` adds
# migrate and worker, and wraps run and serve with the schema check and the
# leader lock, so it goes last.
scale.register(main)

__all__ = ["briefs", "delivery", "main", "publishing"]
