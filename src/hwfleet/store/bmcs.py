"""BMC records: one per node, its address and credentials sealed (:mod:`hwfleet.oob.vault`).

The row keeps the sealed blob and, in the clear, only what is needed to list BMCs
without decrypting: the driver name. ``last_error`` is the latest failure talking to
the BMC (already scrubbed of credentials), shown on the node until a call succeeds.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from datetime import datetime

import msgspec
import sqlalchemy as sa

from hwfleet.store.base import AnyRow, Repository
from hwfleet.store.models import metadata
from hwfleet.store.sqltypes import UTCDateTime

bmcs = sa.Table(
    "bmcs",
    metadata,
    sa.Column("node", sa.String(64), primary_key=True),
    sa.Column("driver", sa.String(32), nullable=False),
    sa.Column("sealed", sa.LargeBinary, nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)


class BmcRecord(msgspec.Struct, frozen=True, kw_only=True):
    node: str
    driver: str
    sealed: bytes
    last_error: str | None
    created_at: datetime
    updated_at: datetime

    def __repr__(self) -> str:
        return f"BmcRecord(node={self.node!r}, driver={self.driver!r})"


def to_bmc(row: AnyRow) -> BmcRecord:
    m = row._mapping
    return BmcRecord(
        node=m["node"],
        driver=m["driver"],
        sealed=bytes(m["sealed"]),
        last_error=m["last_error"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


class BmcRepository(Repository):
    """``BmcRepository(tx.conn)``."""

    __slots__ = ()

    async def put(self, node: str, driver: str, sealed: bytes, at: datetime) -> None:
        stmt = self._insert(bmcs).values(
            node=node, driver=driver, sealed=sealed, created_at=at, updated_at=at
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["node"],
            set_={"driver": driver, "sealed": sealed, "updated_at": at, "last_error": None},
        )
        await self._conn.execute(stmt)

    async def get(self, node: str) -> BmcRecord | None:
        row = await self._row(sa.select(bmcs).where(bmcs.c.node == node))
        return None if row is None else to_bmc(row)

    async def get_many(self, nodes: Iterable[str]) -> dict[str, BmcRecord]:
        """The records of ``nodes`` that have one, by node (one query for a claimed batch)."""
        wanted = sorted(set(nodes))
        if not wanted:
            return {}
        rows = await self._rows(sa.select(bmcs).where(bmcs.c.node.in_(wanted)))
        return {r.node: r for r in map(to_bmc, rows)}

    async def list(self) -> builtins.list[BmcRecord]:
        return [to_bmc(r) for r in await self._rows(sa.select(bmcs).order_by(bmcs.c.node))]

    async def delete(self, node: str) -> bool:
        result = await self._conn.execute(sa.delete(bmcs).where(bmcs.c.node == node))
        return bool(result.rowcount)

    async def set_error(self, node: str, error: str | None, at: datetime) -> None:
        await self._conn.execute(
            sa.update(bmcs).where(bmcs.c.node == node).values(last_error=error, updated_at=at)
        )
