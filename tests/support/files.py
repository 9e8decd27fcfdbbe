"""Where test data lives, and golden-file comparison (UPDATE_GOLDEN=1 rewrites)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
DATA = ROOT / "tests" / "data"
GOLDEN = ROOT / "tests" / "golden"
# Copies of the sample briefs: tests never read the user's briefs/ folder,
# which `make run` and editors change.
SAMPLES = DATA / "samples"
REFERENCE = DATA / "reference.txt"


def assert_golden(path: Path, actual: str | bytes) -> None:
    """Compare with a golden file; UPDATE_GOLDEN=1 writes it instead."""
    data = actual.encode("utf-8") if isinstance(actual, str) else actual
    if os.environ.get("UPDATE_GOLDEN") == "1" or not path.exists():
        if os.environ.get("UPDATE_GOLDEN") != "1" and os.environ.get("CI"):
            pytest.fail(f"golden file missing in CI: {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    expected = path.read_bytes()
    if expected != data:
        # Show a readable diff for text goldens.
        assert data.decode("utf-8", "replace") == expected.decode("utf-8", "replace"), f"differs from {path}"
