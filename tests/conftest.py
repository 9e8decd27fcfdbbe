"""Shared fixtures; the helpers themselves live in tests/support/."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.files import ROOT


@pytest.fixture
def root() -> Path:
    return ROOT


# The throwaway PostgreSQL server (session-wide) for suites that run on both backends.
from tests.support.postgres import pg_server  # noqa: E402,F401
