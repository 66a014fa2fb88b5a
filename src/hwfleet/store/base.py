"""What every repository shares: the transaction's connection and dialect-aware upserts."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, TypeAlias

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

Insert: TypeAlias = postgresql.Insert | sqlite.Insert
#: A result row of any width (SQLAlchemy 2.1 types rows by their column tuple).
AnyRow: TypeAlias = "sa.Row[*tuple[Any, ...]]"


class Repository:
    """Base of the per-table repositories; each is bound to one transaction's connection."""

    __slots__ = ("_conn", "_pg")

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        self._pg = conn.dialect.name == "postgresql"

    def _insert(self, table: sa.Table) -> Insert:
        return dialect_insert(self._pg, table)

    async def _rows(self, stmt: sa.Executable, params: Any = None) -> list[AnyRow]:
        result = await self._conn.execute(stmt, params)
        return list(result.all())

    async def _row(self, stmt: sa.Executable, params: Any = None) -> AnyRow | None:
        result = await self._conn.execute(stmt, params)
        return result.first()


def dialect_insert(pg: bool, table: sa.Table) -> Insert:
    """INSERT with ``ON CONFLICT`` support: both engines spell upserts the same way."""
    return postgresql.insert(table) if pg else sqlite.insert(table)


def check_state(value: str, allowed: Collection[str], what: str) -> str:
    """Refuse a state outside the vocabulary instead of storing garbage."""
    if value in allowed:
        return value
    options = ", ".join(sorted(allowed))
    raise ValueError(f"{what} state must be one of {options}, not {value!r}")


def check_limit(limit: int) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"limit must be a positive integer, not {limit!r}")
    return limit
