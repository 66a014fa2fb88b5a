"""Store fixtures: every repository test runs once on SQLite and once on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hwfleet.store import Store, open_store

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind (the SQLite file's directory does not exist yet)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'data' / 'hwfleet.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    opened = await open_store(db_url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def now() -> datetime:
    """A fixed, timezone-aware instant with microseconds (both engines must keep them)."""
    return datetime(2025, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)


def later(at: datetime, seconds: float) -> datetime:
    return at + timedelta(seconds=seconds)
