"""The outbox: every external POST (MES, webhooks) is a row first, delivered with retries.

A row is written in the same transaction as the result it reports, so a crash
or a MES outage delays a post but never loses it. Delivery workers ``claim``
due rows under a lease; on PostgreSQL the claim locks with ``FOR UPDATE SKIP
LOCKED`` so replicas polling together never take the same row, and an expired
lease (a worker that died mid-delivery) makes the row claimable again.
"""

from __future__ import annotations

import builtins
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from hwfleet.store.base import AnyRow, Repository, check_limit, check_state
from hwfleet.store.models import outbox
from hwfleet.store.records import OUTBOX_STATES, OutboxRecord


def to_outbox(row: AnyRow) -> OutboxRecord:
    m = row._mapping
    return OutboxRecord(
        id=m["id"],
        kind=m["kind"],
        url=m["url"],
        body=m["body"],
        idempotency_key=m["idempotency_key"],
        state=m["state"],
        attempts=m["attempts"],
        next_attempt_at=m["next_attempt_at"],
        last_error=m["last_error"],
        created_at=m["created_at"],
        delivered_at=m["delivered_at"],
    )


_RELEASE = {"lease_owner": None, "lease_until": None}


class OutboxRepository(Repository):
    """``tx.outbox``."""

    __slots__ = ()

    async def add(
        self, *, kind: str, url: str, body: dict[str, Any], idempotency_key: str, at: datetime
    ) -> OutboxRecord:
        """Queue a POST; the same ``idempotency_key`` again returns the row already queued."""
        if not idempotency_key:
            raise ValueError("an outbox row needs an idempotency key")
        stmt = (
            self._insert(outbox)
            .values(
                kind=kind,
                url=url,
                body=body,
                idempotency_key=idempotency_key,
                state="pending",
                attempts=0,
                next_attempt_at=at,
                created_at=at,
            )
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(*outbox.c)
        )
        row = await self._row(stmt)
        if row is None:
            # Someone queued this key first; READ COMMITTED lets us see their committed row.
            row = await self._row(
                sa.select(outbox).where(outbox.c.idempotency_key == idempotency_key)
            )
            assert row is not None
        return to_outbox(row)

    async def claim(
        self, *, worker: str, limit: int, lease: float, now: datetime
    ) -> list[OutboxRecord]:
        """Lease up to ``limit`` due rows to ``worker`` for ``lease`` seconds, oldest due first.

        Each claim counts as an attempt, so a worker that crashes mid-delivery
        still moves the row towards its retry limit.
        """
        if lease <= 0:
            raise ValueError(f"lease must be a positive number of seconds, not {lease}")
        due = (
            sa.select(outbox.c.id)
            .where(
                outbox.c.state == "pending",
                outbox.c.next_attempt_at <= now,
                sa.or_(outbox.c.lease_until.is_(None), outbox.c.lease_until <= now),
            )
            .order_by(outbox.c.next_attempt_at, outbox.c.id)
            .limit(check_limit(limit))
        )
        update = sa.update(outbox).values(
            lease_owner=worker,
            lease_until=now + timedelta(seconds=lease),
            attempts=outbox.c.attempts + 1,
        )
        if self._pg:
            # A CTE with FOR UPDATE is materialised once: the locked set is the claimed set.
            locked = due.with_for_update(skip_locked=True).cte("due")
            stmt = update.where(outbox.c.id == locked.c.id)
        else:
            # SQLite: the UPDATE holds the single write lock for the whole statement.
            stmt = update.where(outbox.c.id.in_(due.scalar_subquery()))
        rows = await self._rows(stmt.returning(*outbox.c))
        return sorted((to_outbox(row) for row in rows), key=lambda r: (r.next_attempt_at, r.id))

    async def delivered(self, id: int, at: datetime) -> None:
        await self._conn.execute(
            sa.update(outbox)
            .where(outbox.c.id == id, outbox.c.state == "pending")
            .values(state="delivered", delivered_at=at, last_error=None, **_RELEASE)
        )

    async def retry(self, id: int, *, error: str, next_attempt_at: datetime) -> None:
        """Delivery failed; try again at ``next_attempt_at`` (the caller picks the backoff)."""
        await self._conn.execute(
            sa.update(outbox)
            .where(outbox.c.id == id, outbox.c.state == "pending")
            .values(last_error=error, next_attempt_at=next_attempt_at, **_RELEASE)
        )

    async def dead(self, id: int, *, error: str, at: datetime) -> None:
        """Give up on a row (rejected by the server, or out of attempts); it stays for audit."""
        del at  # the row keeps next_attempt_at of its last try; the outcome is the state
        await self._conn.execute(
            sa.update(outbox)
            .where(outbox.c.id == id, outbox.c.state == "pending")
            .values(state="dead", last_error=error, **_RELEASE)
        )

    async def get(self, id: int) -> OutboxRecord | None:
        row = await self._row(sa.select(outbox).where(outbox.c.id == id))
        return None if row is None else to_outbox(row)

    async def list(
        self, *, state: str | None = None, limit: int = 200
    ) -> builtins.list[OutboxRecord]:
        """Newest first."""
        stmt = sa.select(outbox).order_by(outbox.c.id.desc()).limit(check_limit(limit))
        if state is not None:
            stmt = stmt.where(outbox.c.state == check_state(state, OUTBOX_STATES, "outbox"))
        return [to_outbox(row) for row in await self._rows(stmt)]

    async def by_keys(self, keys: builtins.list[str]) -> builtins.list[OutboxRecord]:
        """The rows queued under these idempotency keys, oldest first."""
        stmt = sa.select(outbox).where(outbox.c.idempotency_key.in_(keys)).order_by(outbox.c.id)
        return [to_outbox(row) for row in await self._rows(stmt)]

    async def pending_count(self) -> int:
        row = await self._row(
            sa.select(sa.func.count()).select_from(outbox).where(outbox.c.state == "pending")
        )
        return int(row[0]) if row is not None else 0
