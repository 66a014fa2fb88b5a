"""Database URLs: what ``--db`` / ``HWFLEET_DB`` accept, normalised to the async drivers."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from hwfleet.store.errors import HINT, StoreUnavailableError

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


def normalize_url(text: str) -> URL:
    """``sqlite:///PATH``, ``postgresql://…`` (or a bare file path) → an async-driver URL.

    Raises :class:`StoreUnavailableError` naming what is wrong, so the CLI prints one line.
    """
    value = text.strip()
    if not value:
        raise StoreUnavailableError(f"no database URL given — {HINT}")
    if "://" not in value:
        return URL.create("sqlite+aiosqlite", database=str(Path(value).expanduser()))
    try:
        url = make_url(value)
    except ArgumentError as exc:
        raise StoreUnavailableError(
            f"database URL {value!r} is not a URL ({exc}) — {HINT}"
        ) from None
    driver = _DRIVERS.get(url.drivername)
    if driver is None:
        raise StoreUnavailableError(
            f"database URL scheme {url.drivername!r} is not supported: use sqlite:///PATH "
            f"or postgresql://USER@HOST:PORT/DB — {HINT}"
        )
    url = url.set(drivername=driver)
    if driver.startswith("sqlite") and url.database and url.database != ":memory:":
        url = url.set(database=str(Path(url.database).expanduser()))
    return url


def is_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")
