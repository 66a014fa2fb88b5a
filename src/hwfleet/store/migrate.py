"""Bring a database to the newest schema with alembic, safely when replicas start together.

Runs programmatically (no alembic.ini): the migration scripts ship inside the
package, next to this module. On PostgreSQL the upgrade holds a transaction-
scoped advisory lock, so two controllers starting at once migrate one after the
other and the second finds nothing to do; on SQLite the migration transaction
begins IMMEDIATE, which serialises writers the same way.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from hwfleet.store.errors import StoreUnavailableError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: pg_advisory_xact_lock key: the bytes of "hwfleet" as one bigint.
PG_MIGRATION_LOCK = int.from_bytes(b"hwfleet", "big")


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest revision this hwfleet knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships 0001
        raise RuntimeError(f"no alembic revisions under {MIGRATIONS}")
    return head


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection: Connection, head: str) -> None:
    if _current(connection) == head:
        return  # the common case on every start: skip loading env.py and the scripts
    try:
        command.upgrade(alembic_config(connection), "head")
    except CommandError as exc:
        current = _current(connection)
        raise StoreUnavailableError(
            f"database schema is at revision {current!r}, which this hwfleet does not know "
            f"(its newest is {head!r}): upgrade hwfleet ({exc})"
        ) from None


async def upgrade(engine: AsyncEngine) -> None:
    """Migrate to head in one transaction (DDL is transactional on both engines)."""
    head = head_revision()
    async with engine.connect() as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            await conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK}
            )
        await conn.run_sync(_upgrade, head)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None before the first migration)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)
