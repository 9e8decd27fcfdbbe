"""Shared fixtures; the helpers themselves live in tests/support/."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.files import ROOT


@pytest.fixture
def root() -> Path:
    return ROOT
