"""Every test here runs on SQLite and on a real PostgreSQL server (tests/support/postgres.py)."""

from __future__ import annotations

import pytest

from tests.support.postgres import second_store_url, store_url  # noqa: F401


@pytest.fixture(autouse=True)
def _both_backends(store_url: str) -> str:  # noqa: F811
    return store_url
