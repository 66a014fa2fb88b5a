"""Devices found by discovery (seed 004 metadata), enrolled or not."""

from __future__ import annotations

import builtins
import functools
import ipaddress
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hwfleet.store.base import AnyRow, Repository, dialect_insert
from hwfleet.store.models import discovered
from hwfleet.store.records import DiscoveredRecord


def to_discovered(row: AnyRow) -> DiscoveredRecord:
    m = row._mapping
    return DiscoveredRecord(
        uuid=m["uuid"],
        metadata=m["metadata"],
        ipaddr=m["ipaddr"],
        spoofed=bool(m["spoofed"]),
        first_seen=m["first_seen"],
        last_seen=m["last_seen"],
    )


# One upsert per discovery reply: built once per dialect, run with parameters (as in devices.py).
@functools.cache
def _upsert_statement(pg: bool) -> sa.Executable:
    insert = dialect_insert(pg, discovered)
    return insert.on_conflict_do_update(
        index_elements=[discovered.c.uuid],
        set_={col: insert.excluded[col] for col in ("metadata", "ipaddr", "spoofed", "last_seen")},
    ).returning(*discovered.c)


class DiscoveredRepository(Repository):
    """``tx.discovered``."""

    __slots__ = ()

    async def upsert(
        self, uuid: str, metadata: dict[str, Any], *, ipaddr: str, spoofed: bool, at: datetime
    ) -> DiscoveredRecord:
        """Record the latest announcement of a device; ``first_seen`` is kept."""
        params = {
            "uuid": uuid,
            "metadata": metadata,
            "ipaddr": ipaddr,
            "spoofed": bool(spoofed),
            "first_seen": at,
            "last_seen": at,
        }
        row = await self._row(_upsert_statement(self._pg), params)
        assert row is not None
        return to_discovered(row)

    async def list(self) -> builtins.list[DiscoveredRecord]:
        """Ordered by address (numerically, as an operator reads a subnet), then uuid."""
        rows = await self._rows(sa.select(discovered))
        return sorted((to_discovered(row) for row in rows), key=_address_order)


def _address_order(record: DiscoveredRecord) -> tuple[int, int, str, str]:
    try:
        address = ipaddress.ip_address(record.ipaddr)
    except ValueError:
        return (2, 0, record.ipaddr, record.uuid)
    return (address.version, int(address), "", record.uuid)
