"""Runtime configuration kept in the database (seed 003 ``configuration`` methods.set/get)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hwfleet.store.base import Repository
from hwfleet.store.models import config


class ConfigRepository(Repository):
    """``tx.config``: JSON values by key."""

    __slots__ = ()

    async def get(self, key: str) -> Any | None:
        row = await self._row(sa.select(config.c.value).where(config.c.key == key))
        return None if row is None else row[0]

    async def set(self, key: str, value: Any, at: datetime) -> None:
        if not key:
            raise ValueError("a configuration key cannot be empty")
        stmt = self._insert(config).values(key=key, value=value, updated_at=at)
        stmt = stmt.on_conflict_do_update(
            index_elements=[config.c.key],
            set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
        )
        await self._conn.execute(stmt)

    async def all(self) -> dict[str, Any]:
        rows = await self._rows(sa.select(config.c.key, config.c.value).order_by(config.c.key))
        return {row[0]: row[1] for row in rows}
