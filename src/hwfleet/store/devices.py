"""Devices and their inventories: the controller's view of every agent it has met."""

from __future__ import annotations

import builtins
import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hwfleet.store.base import AnyRow, Repository, dialect_insert
from hwfleet.store.models import devices, inventories
from hwfleet.store.records import DeviceRecord
from hwfleet.store.sqltypes import UTCDateTime, json_type
from hwfleet.types import Serial

#: Uuids per UPDATE in ``touch``: well under both engines' bound-parameter limits.
TOUCH_CHUNK = 2000
_UPDATED_ON_UPSERT = (
    "serial",
    "name",
    "model_id",
    "version",
    "ipaddr",
    "macs",
    "st_id",
    "state",
    "transport",
    "last_seen",
    "kind",
)
#: ``devices.kind`` of a device that never enrolled and is known by its serial only.
LEGACY = "legacy"


def check_serial(serial: object) -> Serial:
    """A serial is a JSON int or string (seed 000 keeps the type the device reported)."""
    if isinstance(serial, bool) or not isinstance(serial, int | str):
        raise TypeError(f"serial must be an int or a str, not {type(serial).__name__}: {serial!r}")
    return serial


def to_device(row: AnyRow) -> DeviceRecord:
    m = row._mapping
    return DeviceRecord(
        uuid=m["uuid"],
        serial=m["serial"],
        name=m["name"],
        model_id=m["model_id"],
        version=m["version"],
        ipaddr=m["ipaddr"],
        macs=list(m["macs"]),
        st_id=m["st_id"],
        state=m["state"],
        transport=m["transport"],
        first_seen=m["first_seen"],
        last_seen=m["last_seen"],
        kind=m["kind"],
    )


# Hot paths build their statement once per dialect and execute it with parameters:
# constructing an upsert costs more than running it.
@functools.cache
def _upsert_statement(pg: bool) -> sa.Executable:
    insert = dialect_insert(pg, devices)
    return insert.on_conflict_do_update(
        index_elements=[devices.c.uuid],
        set_={col: insert.excluded[col] for col in _UPDATED_ON_UPSERT},
    ).returning(*devices.c)


@functools.cache
def _legacy_statement(pg: bool) -> sa.Executable:
    # Never turns an agent's row into a legacy one: only legacy rows are refreshed.
    insert = dialect_insert(pg, devices)
    return insert.on_conflict_do_update(
        index_elements=[devices.c.uuid],
        set_={"macs": insert.excluded.macs, "last_seen": insert.excluded.last_seen},
        where=devices.c.kind == LEGACY,
    )


@functools.cache
def _inventory_statement(pg: bool) -> sa.Executable:
    source = sa.select(
        devices.c.uuid,
        sa.bindparam("p_inventory", type_=json_type()),
        sa.bindparam("p_at", type_=UTCDateTime()),
    ).where(devices.c.uuid == sa.bindparam("p_uuid"))
    insert = dialect_insert(pg, inventories).from_select(
        ["device_uuid", "inventory", "updated_at"], source
    )
    return insert.on_conflict_do_update(
        index_elements=[inventories.c.device_uuid],
        set_={"inventory": insert.excluded.inventory, "updated_at": insert.excluded.updated_at},
    ).returning(inventories.c.device_uuid)


class DeviceRepository(Repository):
    """``tx.devices``."""

    __slots__ = ()

    async def upsert(
        self,
        uuid: str,
        *,
        serial: Serial,
        name: str,
        model_id: str,
        version: str,
        macs: list[str],
        ipaddr: str,
        st_id: int,
        transport: str,
        online: bool,
        at: datetime,
    ) -> DeviceRecord:
        """Insert or refresh a device in one statement; ``first_seen`` is kept from the first."""
        row = await self._row(
            _upsert_statement(self._pg),
            {
                "uuid": uuid,
                "serial": check_serial(serial),
                "name": name,
                "model_id": model_id,
                "version": version,
                "ipaddr": ipaddr,
                "macs": list(macs),
                "st_id": st_id,
                "state": "online" if online else "offline",
                "transport": transport,
                "first_seen": at,
                "last_seen": at,
                "kind": "agent",
            },
        )
        assert row is not None  # an upsert always yields its row
        return to_device(row)

    async def record_legacy(
        self, found: Sequence[tuple[str, Serial, list[str]]], *, at: datetime
    ) -> None:
        """Record devices of kind ``legacy`` — ``(uuid, serial, macs)`` — that answered a scan.

        They never connect, so they stay ``offline``; ``last_seen`` says when one answered.
        """
        if not found:
            return
        params = [
            {
                "uuid": uuid,
                "serial": check_serial(serial),
                "name": f"legacy {serial}"[:255],
                "model_id": "seed-000 reference client",
                "version": "",
                "ipaddr": "",
                "macs": list(macs),
                "st_id": 0,
                "state": "offline",
                "transport": "amqp",
                "first_seen": at,
                "last_seen": at,
                "kind": LEGACY,
            }
            for uuid, serial, macs in found
        ]
        await self._conn.execute(_legacy_statement(self._pg), params)

    async def set_online(self, uuid: str, online: bool, at: datetime) -> None:
        """Going online also records ``at`` as last seen; going offline keeps the last contact."""
        values: dict[str, Any] = {"state": "online" if online else "offline"}
        if online:
            values["last_seen"] = at
        await self._conn.execute(sa.update(devices).where(devices.c.uuid == uuid).values(values))

    async def touch(self, uuids: Sequence[str], at: datetime) -> None:
        """Record a heartbeat for many devices at once (one UPDATE per few thousand)."""
        unique = sorted(set(uuids))  # sorted: concurrent touches lock rows in one order
        for start in range(0, len(unique), TOUCH_CHUNK):
            chunk = unique[start : start + TOUCH_CHUNK]
            await self._conn.execute(
                sa.update(devices).where(devices.c.uuid.in_(chunk)).values(last_seen=at)
            )

    async def set_status(self, uuid: str, st_id: int) -> None:
        await self._conn.execute(
            sa.update(devices).where(devices.c.uuid == uuid).values(st_id=st_id)
        )

    async def rename(self, uuid: str, name: str) -> None:
        await self._conn.execute(sa.update(devices).where(devices.c.uuid == uuid).values(name=name))

    async def get(self, uuid: str) -> DeviceRecord | None:
        row = await self._row(sa.select(devices).where(devices.c.uuid == uuid))
        return None if row is None else to_device(row)

    async def existing(self, uuids: Sequence[str]) -> set[str]:
        """Which of ``uuids`` name a known device (asked in chunks: databases cap parameters)."""
        found: set[str] = set()
        for start in range(0, len(uuids), 500):
            chunk = list(uuids[start : start + 500])
            stmt = sa.select(devices.c.uuid).where(devices.c.uuid.in_(chunk))
            found.update(row[0] for row in await self._rows(stmt))
        return found

    async def list(self) -> builtins.list[DeviceRecord]:
        rows = await self._rows(sa.select(devices).order_by(devices.c.name, devices.c.uuid))
        return [to_device(row) for row in rows]

    async def agent_serials(self) -> builtins.list[tuple[str, Serial]]:
        """``(uuid, serial)`` of every device that is not of kind ``legacy``."""
        stmt = sa.select(devices.c.uuid, devices.c.serial).where(devices.c.kind != LEGACY)
        return [(row[0], row[1]) for row in await self._rows(stmt)]

    async def set_inventory(self, uuid: str, inventory: dict[str, Any], at: datetime) -> None:
        """Replace a device's inventory; :class:`LookupError` if the device is unknown.

        INSERT … SELECT from ``devices`` rather than relying on the foreign key, so
        an unknown uuid leaves the transaction usable (PostgreSQL aborts a
        transaction on any failed statement).
        """
        stmt = _inventory_statement(self._pg)
        params = {"p_uuid": uuid, "p_inventory": inventory, "p_at": at}
        if await self._row(stmt, params) is None:
            raise LookupError(f"no device {uuid!r}: upsert the device before its inventory")

    async def get_inventory(self, uuid: str) -> dict[str, Any] | None:
        row = await self._row(
            sa.select(inventories.c.inventory).where(inventories.c.device_uuid == uuid)
        )
        return None if row is None else dict(row[0])

    async def mark_all_offline(self, at: datetime) -> int:
        """Mark every online device offline (controller start); returns how many changed.

        ``at`` is accepted for symmetry; ``last_seen`` keeps each device's last contact.
        """
        del at
        result = await self._conn.execute(
            sa.update(devices).where(devices.c.state == "online").values(state="offline")
        )
        return int(result.rowcount)
