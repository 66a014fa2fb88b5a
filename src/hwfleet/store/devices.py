"""Devices and their inventories: the controller's view of every agent it has met."""

from __future__ import annotations

import builtins
import functools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import sqlalchemy as sa

from hwfleet.store.base import AnyRow, Repository, dialect_insert
from hwfleet.store.models import devices, inventories
from hwfleet.store.records import DeviceRecord
from hwfleet.store.sqltypes import UTCDateTime, json_type
from hwfleet.types import Serial

#: Uuids per revival UPDATE in ``touch``: well under both engines' bound-parameter limits.
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


def as_of(record: DeviceRecord, stale_before: datetime) -> DeviceRecord:
    """The record by the liveness rule: still marked online but silent since before
    ``stale_before`` means offline (true even while no replica is sweeping)."""
    if record.state == "online" and record.last_seen < stale_before:
        return msgspec.structs.replace(record, state="offline")
    return record


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


def _touch_statement() -> sa.Executable:
    at = sa.bindparam("p_at", type_=UTCDateTime())
    return (
        sa.update(devices)
        .where(devices.c.uuid == sa.bindparam("p_uuid"), devices.c.last_seen < at)
        .values(last_seen=at)
    )


#: PostgreSQL: a whole batch in one statement, the uuids and times as two arrays
#: (an executemany costs a round of parsing and planning per row: 10,000 took 1.6 s).
_PG_TOUCH = sa.text(
    "UPDATE devices SET last_seen = beats.at "
    "FROM unnest(CAST(:uuids AS VARCHAR[]), CAST(:ats AS TIMESTAMPTZ[])) AS beats(uuid, at) "
    "WHERE devices.uuid = beats.uuid AND devices.last_seen < beats.at"
)
_PG_REVIVE = sa.text(
    "UPDATE devices SET state = 'online' "
    "WHERE uuid = ANY(CAST(:uuids AS VARCHAR[])) AND state = 'offline' RETURNING uuid"
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

    async def touch(self, beats: Mapping[str, datetime]) -> builtins.list[str]:
        """Record heartbeats (uuid → when it arrived) for many devices in a few statements.

        ``last_seen`` only moves forward, so a replica flushing an older heartbeat never
        hides a newer one recorded by another. A device marked offline comes back online;
        the uuids it revives are returned (one caller wins each: the UPDATE re-checks).
        """
        if not beats:
            return []
        unique = sorted(beats)  # sorted: concurrent touches lock rows in one order
        if self._pg:
            ats = [beats[uuid].astimezone(UTC) for uuid in unique]
            await self._conn.execute(_PG_TOUCH, {"uuids": unique, "ats": ats})
        else:
            params = [{"p_uuid": uuid, "p_at": beats[uuid]} for uuid in unique]
            await self._conn.execute(_touch_statement(), params)
        if self._pg:
            return [row[0] for row in await self._rows(_PG_REVIVE, {"uuids": unique})]
        revived: builtins.list[str] = []
        for start in range(0, len(unique), TOUCH_CHUNK):
            chunk = unique[start : start + TOUCH_CHUNK]
            rows = await self._rows(
                sa.update(devices)
                .where(devices.c.uuid.in_(chunk), devices.c.state == "offline")
                .values(state="online")
                .returning(devices.c.uuid)
            )
            revived += [row[0] for row in rows]
        return revived

    async def expire(self, stale_before: datetime) -> builtins.list[str]:
        """Mark offline every online device last seen before ``stale_before``; their uuids.

        Replicas run this concurrently: the UPDATE re-checks its condition on rows another
        transaction changed, so each transition (and its event) belongs to one caller.
        """
        rows = await self._rows(
            sa.update(devices)
            .where(devices.c.state == "online", devices.c.last_seen < stale_before)
            .values(state="offline")
            .returning(devices.c.uuid)
        )
        return [row[0] for row in rows]

    async def disconnect(self, uuid: str, last_recorded: datetime) -> bool:
        """Mark a device offline unless someone recorded it after ``last_recorded``.

        A stream device that reconnected to another replica is recorded there with a
        later ``last_seen``; the replica that lost it must not mark it offline.
        """
        rows = await self._rows(
            sa.update(devices)
            .where(
                devices.c.uuid == uuid,
                devices.c.state == "online",
                devices.c.last_seen <= last_recorded,
            )
            .values(state="offline")
            .returning(devices.c.uuid)
        )
        return bool(rows)

    async def set_status(self, uuid: str, st_id: int) -> bool:
        """Record the device's ``st_id``; whether it changed (one statement either way)."""
        result = await self._conn.execute(
            sa.update(devices)
            .where(devices.c.uuid == uuid, devices.c.st_id != st_id)
            .values(st_id=st_id)
        )
        return bool(result.rowcount)

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

    async def list(self, stale_before: datetime | None = None) -> builtins.list[DeviceRecord]:
        """Every device; with ``stale_before``, one still marked online but last seen before
        it is listed offline (the liveness rule holds even when no replica is sweeping)."""
        rows = await self._rows(sa.select(devices).order_by(devices.c.name, devices.c.uuid))
        records = [to_device(row) for row in rows]
        if stale_before is None:
            return records
        return [as_of(r, stale_before) for r in records]

    async def online(self, stale_before: datetime) -> builtins.list[tuple[str, Serial]]:
        """``(uuid, serial)`` of every device online by the liveness rule."""
        rows = await self._rows(
            sa.select(devices.c.uuid, devices.c.serial)
            .where(devices.c.state == "online", devices.c.last_seen >= stale_before)
            .order_by(devices.c.uuid)
        )
        return [(row[0], row[1]) for row in rows]

    async def online_uuids(self, stale_before: datetime) -> builtins.list[str]:
        """The uuid of every device online by the liveness rule (``ping --all``): without
        the serials, whose JSON decoding was a sixth of a ping-all's controller CPU."""
        rows = await self._rows(
            sa.select(devices.c.uuid)
            .where(devices.c.state == "online", devices.c.last_seen >= stale_before)
            .order_by(devices.c.uuid)
        )
        return [row[0] for row in rows]

    async def agent_serials(self) -> builtins.list[tuple[str, Serial]]:
        """``(uuid, serial)`` of every device that is not of kind ``legacy``."""
        stmt = sa.select(devices.c.uuid, devices.c.serial).where(devices.c.kind != LEGACY)
        return [(row[0], row[1]) for row in await self._rows(stmt)]

    async def legacy(self) -> builtins.list[tuple[str, Serial]]:
        """``(uuid, serial)`` of every device of kind ``legacy`` (they never connect)."""
        stmt = (
            sa.select(devices.c.uuid, devices.c.serial)
            .where(devices.c.kind == LEGACY)
            .order_by(devices.c.uuid)
        )
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

    async def mark_all_offline(self) -> int:
        """Mark every online device offline; returns how many changed.

        Only for a controller that is the sole holder of connections (an in-process bus):
        with replicas, another one may be serving these devices right now.
        """
        result = await self._conn.execute(
            sa.update(devices).where(devices.c.state == "online").values(state="offline")
        )
        return int(result.rowcount)
