"""publisher: feeds and newsletters from news briefs."""

__version__ = "0.1.0"
