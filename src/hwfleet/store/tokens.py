"""Single-use enrollment tokens (DESIGN §6). Only a hash of each token is ever stored."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from hwfleet.store.base import Repository
from hwfleet.store.models import enrollment_tokens


class TokenRepository(Repository):
    """``tx.tokens``."""

    __slots__ = ()

    async def add(self, token_hash: str, *, expires_at: datetime, at: datetime) -> None:
        """Store a token's hash; adding the same hash again changes nothing."""
        if not token_hash:
            raise ValueError("a token hash cannot be empty")
        stmt = self._insert(enrollment_tokens).values(
            token_hash=token_hash, expires_at=expires_at, created_at=at
        )
        await self._conn.execute(stmt.on_conflict_do_nothing(index_elements=["token_hash"]))

    async def valid(self, token_hash: str, now: datetime) -> bool:
        """True while the token is unused and unexpired; spends nothing."""
        stmt = sa.select(enrollment_tokens.c.token_hash).where(
            enrollment_tokens.c.token_hash == token_hash,
            enrollment_tokens.c.used_at.is_(None),
            enrollment_tokens.c.expires_at > now,
        )
        return await self._row(stmt) is not None

    async def consume(self, token_hash: str, now: datetime) -> bool:
        """True exactly once per token, and only before it expires.

        One conditional UPDATE: two enrollments racing with one token cannot both win.
        """
        stmt = (
            sa.update(enrollment_tokens)
            .where(
                enrollment_tokens.c.token_hash == token_hash,
                enrollment_tokens.c.used_at.is_(None),
                enrollment_tokens.c.expires_at > now,
            )
            .values(used_at=now)
            .returning(enrollment_tokens.c.token_hash)
        )
        return await self._row(stmt) is not None
