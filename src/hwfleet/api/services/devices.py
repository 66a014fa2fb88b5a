"""Devices as the API sees them: the stored fleet, and calls to connected devices."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import HTTPException, status

from hwfleet.api.convert import to_json
from hwfleet.api.ports import DeviceLinks, TaskControl
from hwfleet.protocol import envelope, methods
from hwfleet.protocol.framing import MAX_LINE
from hwfleet.protocol.methods import is_long
from hwfleet.store import DeviceRecord, DiscoveredRecord, Store
from hwfleet.store.devices import LEGACY, as_of

NO_SUCH_DEVICE = "no such device"

DEVICE_FIELDS = (
    "uuid",
    "name",
    "serial",
    "model_id",
    "version",
    "ipaddr",
    "st_id",
    "state",
    "last_seen",
    "transport",
    "first_seen",
    "kind",
)


def device_body(record: DeviceRecord) -> dict[str, Any]:
    body = to_json(record)
    return {k: body.get(k) for k in DEVICE_FIELDS}


def discovered_body(record: DiscoveredRecord) -> dict[str, Any]:
    """A device that answered discovery but never enrolled, in the shape of an enrolled one."""
    meta = record.metadata
    return {
        "uuid": record.uuid,
        "name": str(meta.get("name", "")),
        "serial": meta.get("serial", ""),
        "model_id": str(meta.get("model_id", "")),
        "version": str(meta.get("version", "")),
        "ipaddr": record.ipaddr,
        "st_id": int(meta.get("st_id", 0)),
        "state": "discovered",
        "last_seen": record.last_seen.isoformat(),
        "transport": "",
        "first_seen": record.first_seen.isoformat(),
        "enrolled": False,
        "kind": "agent",
    }


async def assigned_skus(conn: Any, uuid: str | None = None) -> dict[str, str]:
    """Each node's SKU as the graph engine assigned it (the ``sku`` fact of a target)."""
    import sqlalchemy as sa

    from hwfleet.store.graph_tables import node_skus

    stmt = sa.select(node_skus.c.node, node_skus.c.sku)
    if uuid is not None:
        stmt = stmt.where(node_skus.c.node == uuid)
    return {str(node): str(sku) for node, sku in await conn.execute(stmt)}


def check_envelope(method: str, params: dict[str, Any]) -> None:
    """413 for a command whose line would pass the protocol's limit (the agent would end
    the session over it): measured on the envelope exactly as it would be sent."""
    if is_long(method):  # the task service adds a task_id of new_id()'s length
        params = {**params, "task_id": params.get("task_id") or envelope.new_id()}
    size = len(envelope.encode(envelope.command(method, params))) - 1  # newline excluded
    if size > MAX_LINE:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"params: the {method} command would be a {size}-byte line, over the protocol's "
            f"{MAX_LINE}-byte limit: send less",
        )


class DevicesService:
    """The stored devices, and commands to the connected ones."""

    def __init__(self, store: Store, links: DeviceLinks, tasks: TaskControl) -> None:
        self.store = store
        self.links = links
        self.tasks = tasks
        # --- oob --- methods served by the node's BMC instead of its agent (docs/oob.md):
        # returns the reply, or None when the node's agent should get the command.
        self.bmc_methods: (
            Callable[[str, str, dict[str, Any]], Awaitable[dict[str, Any] | None]] | None
        ) = None

    async def list_devices(self, *, discovered: bool) -> list[dict[str, Any]]:
        async with self.store.tx() as tx:
            records = await tx.devices.list(stale_before=self.links.stale_before())
            skus = await assigned_skus(tx.conn)
            devices = [
                device_body(r) | {"enrolled": r.kind != LEGACY, "sku": skus.get(r.uuid)}
                for r in records
            ]
            if discovered:
                known = {d["uuid"] for d in devices}
                devices += [
                    discovered_body(r) for r in await tx.discovered.list() if r.uuid not in known
                ]
        return devices

    async def get(self, uuid: str) -> dict[str, Any]:
        async with self.store.tx() as tx:
            record = await tx.devices.get(uuid)
            if record is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"{NO_SUCH_DEVICE}: {uuid}")
            record = as_of(record, self.links.stale_before())
            inventory = await tx.devices.get_inventory(uuid)
            sku = (await assigned_skus(tx.conn, uuid)).get(uuid)
        body = device_body(record)
        return {**body, "sku": sku, "macs": record.macs, "inventory": inventory}

    async def require_connected(self, uuid: str) -> None:
        """404 for a uuid the controller has never known, 409 for a known device offline."""
        if await self.links.reachable(uuid):  # connected here, or an AMQP device via the bus
            return
        async with self.store.tx(readonly=True) as tx:
            known = await tx.devices.get(uuid) is not None
        if not known:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{NO_SUCH_DEVICE}: {uuid}")
        raise HTTPException(status.HTTP_409_CONFLICT, f"device {uuid} is not connected")

    async def ping(
        self, uuids: list[str], *, every: bool, timeout: float
    ) -> dict[str, dict[str, Any]]:
        """Ping each device once; an unknown uuid answers ``error: "no such device"``."""
        targets = await self.links.online_now() if every else list(dict.fromkeys(uuids))
        unreachable = [u for u in targets if self.links.get(u) is None]
        unknown: set[str] = set()
        if unreachable:
            async with self.store.tx(readonly=True) as tx:
                unknown = set(unreachable) - await tx.devices.existing(unreachable)
        known = [u for u in targets if u not in unknown]
        result = await self.links.ping_many(known, timeout)
        missing = {"ok": False, "rtt_ms": None, "error": NO_SUCH_DEVICE}
        return {u: result.get(u, missing) for u in targets}

    async def call(
        self, uuid: str, method: str, params: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        """One call to a connected device (404/409 first if it is unknown or offline)."""
        await self.require_connected(uuid)
        return await self.links.call(uuid, method, params, timeout)

    async def run(
        self, uuid: str, method: str, params: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        """A short method's ``{"result"}``, or a long one's ``{"task"}`` row."""
        check_envelope(method, params)
        if self.bmc_methods is not None:  # --- oob ---
            served = await self.bmc_methods(uuid, method, params)
            if served is not None:
                return served
        await self.require_connected(uuid)
        if is_long(method):
            return {"task": to_json(await self.tasks.start(uuid, method, params))}
        result = await self.links.call(uuid, method, params, timeout)
        if methods.canonical(method) == methods.INVENTORY and isinstance(result, dict):
            await self.record_inventory(uuid, result)
        return {"result": result}

    async def record_inventory(self, uuid: str, inventory: dict[str, Any]) -> None:
        """Keep the device's latest inventory on its record (``GET /devices/{uuid}``)."""
        async with self.store.tx() as tx:
            await tx.devices.set_inventory(uuid, inventory, datetime.now(UTC))

    async def record_name(self, uuid: str, name: str) -> None:
        """Store the name a device now reports (after ``device.rename``)."""
        async with self.store.tx() as tx:
            await tx.devices.rename(uuid, name)
