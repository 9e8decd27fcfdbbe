"""publisher: feeds and newsletters from news briefs."""

from . import native

__version__ = "0.1.0"

# The parser and renderers compiled by mypyc, when built and current (see publisher.native).
native.install()
