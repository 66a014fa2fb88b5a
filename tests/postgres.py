"""A PostgreSQL database that exists for one test or benchmark run (asyncpg, admin URL).

``tests/conftest.py``'s ``pg_url`` fixture and ``bench/_postgres.py`` both use it, so a
test and a benchmark make and drop their databases the same way.
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlsplit, urlunsplit

#: The admin URL (``HWFLEET_TEST_DB``): this machine's PostgreSQL by default.
DB_URL = os.environ.get("HWFLEET_TEST_DB", "postgresql://postgres@127.0.0.1:5432/postgres")


async def create_database(prefix: str, base: str = DB_URL) -> str:
    """A new empty database ``<prefix>_<random>``; returns its SQLAlchemy (asyncpg) URL."""
    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(base)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    parts = urlsplit(base)
    return urlunsplit(("postgresql+asyncpg", parts.netloc, "/" + name, "", ""))


async def drop_database(url: str, base: str = DB_URL) -> None:
    """Drop the database of ``url`` (made by :func:`create_database`), sessions and all."""
    import asyncpg

    admin = await asyncpg.connect(base)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await admin.close()
