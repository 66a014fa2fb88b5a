"""Pollers: periodic BMC reads as rows, leased so controller replicas share them.

A worker ``claim``s due rows under a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
the single write lock on SQLite), polls, then records success (data, failures reset,
next run one interval on) or failure (failures + 1, next run ``interval * 2^failures``
on, capped at :data:`MAX_BACKOFF`). A worker that dies mid-poll leaves a lease that
expires, and the row becomes claimable again.
"""

from __future__ import annotations

import builtins
from datetime import datetime, timedelta
from typing import Any

import msgspec
import sqlalchemy as sa

from hwfleet.store.base import AnyRow, Repository, check_limit
from hwfleet.store.models import metadata
from hwfleet.store.sqltypes import UTCDateTime, big_id, json_type

#: The longest a failing poller waits between tries (seconds).
MAX_BACKOFF = 3600.0

pollers = sa.Table(
    "pollers",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("node", sa.String(64), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("interval", sa.Float, nullable=False),
    sa.Column("paused", sa.Boolean, nullable=False),
    sa.Column("rules", json_type(), nullable=False),
    sa.Column("next_run_at", UTCDateTime(), nullable=False),
    sa.Column("lease_owner", sa.String(255), nullable=True),
    sa.Column("lease_until", UTCDateTime(), nullable=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("last_data", json_type(nullable=True), nullable=True),
    sa.Column("last_polled_at", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("node", "type"),
    sa.Index(None, "next_run_at"),
    sqlite_autoincrement=True,
)


class PollerRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    node: str
    type: str
    interval: float
    paused: bool
    rules: list[dict[str, Any]]
    next_run_at: datetime
    lease_owner: str | None
    lease_until: datetime | None
    failures: int
    last_error: str | None
    last_data: Any
    last_polled_at: datetime | None
    created_at: datetime


def to_poller(row: AnyRow) -> PollerRecord:
    m = row._mapping
    return PollerRecord(**{f: m[f] for f in PollerRecord.__struct_fields__})


def backoff(interval: float, failures: int) -> float:
    """Seconds to the next try after ``failures`` consecutive failures."""
    return float(min(MAX_BACKOFF, interval * 2 ** min(failures, 32)))


class PollerRepository(Repository):
    """``PollerRepository(tx.conn)``."""

    __slots__ = ()

    async def ensure(
        self, node: str, type: str, interval: float, at: datetime, rules: builtins.list[Any]
    ) -> PollerRecord:
        """The node's poller of this type, created (due now) if missing."""
        stmt = (
            self._insert(pollers)
            .values(
                node=node,
                type=type,
                interval=interval,
                paused=False,
                rules=rules,
                next_run_at=at,
                failures=0,
                created_at=at,
            )
            .on_conflict_do_nothing(index_elements=["node", "type"])
        )
        await self._conn.execute(stmt)
        row = await self._row(
            sa.select(pollers).where(pollers.c.node == node, pollers.c.type == type)
        )
        assert row is not None
        return to_poller(row)

    async def get(self, id: int) -> PollerRecord | None:
        row = await self._row(sa.select(pollers).where(pollers.c.id == id))
        return None if row is None else to_poller(row)

    async def list(self, node: str | None = None) -> builtins.list[PollerRecord]:
        stmt = sa.select(pollers).order_by(pollers.c.id)
        if node is not None:
            stmt = stmt.where(pollers.c.node == node)
        return [to_poller(r) for r in await self._rows(stmt)]

    async def update(self, id: int, **values: Any) -> PollerRecord | None:
        allowed = {"interval", "paused", "rules", "next_run_at"}
        if not values or set(values) - allowed:
            raise ValueError("only these poller fields can change: " + ", ".join(sorted(allowed)))
        row = await self._row(
            sa.update(pollers).where(pollers.c.id == id).values(**values).returning(*pollers.c)
        )
        return None if row is None else to_poller(row)

    async def next_due(self) -> datetime | None:
        """When the earliest unpaused poller is next due."""
        stmt = sa.select(sa.func.min(pollers.c.next_run_at)).where(pollers.c.paused.is_(False))
        row = await self._row(stmt)
        value = None if row is None else row[0]
        if isinstance(value, str):  # SQLite's MIN() bypasses the column type
            value = datetime.fromisoformat(value)
        if value is not None and value.tzinfo is None:
            from datetime import UTC

            value = value.replace(tzinfo=UTC)
        return value

    async def delete_node(self, node: str) -> None:
        await self._conn.execute(sa.delete(pollers).where(pollers.c.node == node))

    async def claim(
        self,
        *,
        worker: str,
        limit: int,
        lease: float,
        now: datetime,
        until: datetime | None = None,
    ) -> builtins.list[PollerRecord]:
        """Lease up to ``limit`` unpaused pollers due by ``until`` (default ``now``) to ``worker``.

        Most overdue first. A worker claims a little ahead (``until`` past ``now``) so it
        can start each poll on its own timer at the exact time, claiming in batches.
        """
        due = (
            sa.select(pollers.c.id)
            .where(
                pollers.c.paused.is_(False),
                pollers.c.next_run_at <= (now if until is None else until),
                sa.or_(pollers.c.lease_until.is_(None), pollers.c.lease_until <= now),
            )
            .order_by(pollers.c.next_run_at, pollers.c.id)
            .limit(check_limit(limit))
        )
        update = sa.update(pollers).values(
            lease_owner=worker, lease_until=now + timedelta(seconds=lease)
        )
        if self._pg:
            locked = due.with_for_update(skip_locked=True).cte("due")
            stmt = update.where(pollers.c.id == locked.c.id)
        else:
            stmt = update.where(pollers.c.id.in_(due.scalar_subquery()))
        rows = await self._rows(stmt.returning(*pollers.c))
        return sorted((to_poller(r) for r in rows), key=lambda r: (r.next_run_at, r.id))

    async def succeeded(
        self, id: int, *, worker: str, data: Any, next_run_at: datetime, at: datetime
    ) -> None:
        """Store the data and clear the failures; the lease is released."""
        await self._conn.execute(
            sa.update(pollers)
            .where(pollers.c.id == id, pollers.c.lease_owner == worker)
            .values(
                last_data=data,
                last_polled_at=at,
                failures=0,
                last_error=None,
                lease_owner=None,
                lease_until=None,
                next_run_at=next_run_at,
            )
        )

    async def succeeded_many(self, *, worker: str, results: builtins.list[Any]) -> None:
        """Many :meth:`succeeded` at once (one statement, executemany): ``(id, data, next, at)``."""
        if not results:
            return
        stmt = (
            sa.update(pollers)
            .where(pollers.c.id == sa.bindparam("b_id"), pollers.c.lease_owner == worker)
            .values(
                last_data=sa.bindparam("b_data", type_=pollers.c.last_data.type),
                last_polled_at=sa.bindparam("b_at", type_=pollers.c.last_polled_at.type),
                failures=0,
                last_error=None,
                lease_owner=None,
                lease_until=None,
                next_run_at=sa.bindparam("b_next", type_=pollers.c.next_run_at.type),
            )
        )
        await self._conn.execute(
            stmt,
            [{"b_id": i, "b_data": d, "b_next": n, "b_at": a} for i, d, n, a in results],
        )

    async def failed(self, id: int, *, worker: str, error: str, at: datetime) -> None:
        row = await self._row(sa.select(pollers).where(pollers.c.id == id))
        if row is None:
            return
        current = to_poller(row)
        failures = current.failures + 1
        await self._conn.execute(
            sa.update(pollers)
            .where(pollers.c.id == id, pollers.c.lease_owner == worker)
            .values(
                failures=failures,
                last_error=error,
                last_polled_at=at,
                lease_owner=None,
                lease_until=None,
                next_run_at=at + timedelta(seconds=backoff(current.interval, failures)),
            )
        )
