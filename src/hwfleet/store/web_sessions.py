"""Dashboard login sessions (docs/dashboard.md): kept in the store, so they outlive a
controller restart and every replica on the same database sees the same ones.

Only a SHA-256 hash of each session id is stored: someone who can read the database
cannot present a row as a cookie. The row is deleted at logout (every replica then
refuses the cookie) and when it has been unused longer than the idle limit. The table
lives here, on the shared metadata, so the migration check sees it like every other.
Repositories are made per transaction: ``WebSessionRepository(tx.conn)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from hwfleet.store.base import Repository
from hwfleet.store.models import metadata
from hwfleet.store.sqltypes import UTCDateTime

web_sessions = sa.Table(
    "web_sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("last_used", UTCDateTime(), nullable=False),
    sa.Index("ix_web_sessions_last_used", "last_used"),
)


@dataclass(frozen=True, slots=True)
class StoredSession:
    id_hash: str
    created_at: datetime
    last_used: datetime


class WebSessionRepository(Repository):
    __slots__ = ()

    async def add(self, id_hash: str, at: datetime) -> None:
        await self._conn.execute(
            sa.insert(web_sessions).values(id_hash=id_hash, created_at=at, last_used=at)
        )

    async def get(self, id_hash: str) -> StoredSession | None:
        row = await self._row(sa.select(web_sessions).where(web_sessions.c.id_hash == id_hash))
        if row is None:
            return None
        m = row._mapping
        return StoredSession(m["id_hash"], m["created_at"], m["last_used"])

    async def touch(self, id_hash: str, at: datetime) -> None:
        await self._conn.execute(
            sa.update(web_sessions).where(web_sessions.c.id_hash == id_hash).values(last_used=at)
        )

    async def delete(self, id_hash: str) -> bool:
        stmt = (
            sa.delete(web_sessions)
            .where(web_sessions.c.id_hash == id_hash)
            .returning(web_sessions.c.id_hash)
        )
        return await self._row(stmt) is not None

    async def expire(self, unused_since: datetime) -> int:
        """Delete every session last used before ``unused_since``; returns how many."""
        stmt = sa.delete(web_sessions).where(web_sessions.c.last_used < unused_since)
        result = await self._conn.execute(stmt)
        return int(result.rowcount or 0)

    async def count(self) -> int:
        return int(
            (
                await self._conn.execute(sa.select(sa.func.count()).select_from(web_sessions))
            ).scalar_one()
        )

    async def drop_oldest(self, keep: int) -> None:
        """Delete the least recently used sessions beyond the newest ``keep``."""
        newest = (
            sa.select(web_sessions.c.id_hash)
            .order_by(web_sessions.c.last_used.desc())
            .limit(keep)
            .scalar_subquery()
        )
        await self._conn.execute(
            sa.delete(web_sessions).where(web_sessions.c.id_hash.not_in(newest))
        )
