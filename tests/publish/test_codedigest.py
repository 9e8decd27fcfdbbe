"""Kept outputs (feed entry parts, site items, page inputs) are keyed by the code that shapes them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from publisher.publish.codedigest import PACKAGE, SHAPING, code_digest


@pytest.mark.parametrize("changed", ["render/feeds.py", "briefs/parse.py"])
def test_a_change_to_the_parser_or_a_renderer_changes_the_digest(tmp_path: Path, changed: str) -> None:
    same, edited = tmp_path / "same", tmp_path / "edited"
    for copy in (same, edited):
        for room in SHAPING:
            shutil.copytree(PACKAGE / room, copy / room, ignore=shutil.ignore_patterns("__pycache__"))
    with open(edited / changed, "a", encoding="utf-8") as fh:
        fh.write("\n# a change\n")
    assert code_digest(same) == code_digest(PACKAGE)  # the same code, wherever it lies
    assert code_digest(edited) != code_digest(PACKAGE)
