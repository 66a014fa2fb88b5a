"""Device rows and ``device.online`` events of connecting devices, one transaction per batch.

Each accepted handshake refreshes the device's row and records an event. Written one
transaction each (two commits per connect), a storm of reconnects after a controller
restart spent most of its database time committing. Here the devices that connect
while one batch is being written are written together by the next (group commit):
each caller still waits until its own row is committed, so nothing a caller sees
changes, only how many commits it takes. A batch that fails is written again one
device at a time, so one bad row cannot refuse the others.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hwfleet.bus.topology import EventKey
from hwfleet.controller.events import EventPublisher, utcnow

if TYPE_CHECKING:
    from hwfleet.protocol import methods
    from hwfleet.store import EventRecord, Store
    from hwfleet.store.tx import Tx

log = logging.getLogger(__name__)

#: Devices per transaction at most: bounds how long one commit holds the write lock.
BATCH = 500


@dataclass(slots=True)
class Arrival:
    """One device to record as online, and the caller waiting for it."""

    uuid: str
    handshake: methods.Handshake
    ipaddr: str
    transport: str
    at: datetime
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def event(self) -> tuple[str, dict[str, Any], str]:
        hs = self.handshake
        payload = {
            "uuid": self.uuid,
            "serial": hs.serial,
            "name": hs.name,
            "ipaddr": self.ipaddr,
            "transport": self.transport,
        }
        return EventKey.device_online(self.uuid), payload, self.uuid


class AttachWriter:
    """Collects arrivals and writes them, with their events, in as few commits as it can."""

    def __init__(self, store: Store, events: EventPublisher) -> None:
        self._store = store
        self._events = events
        self._pending: list[Arrival] = []
        self._worker: asyncio.Task[None] | None = None

    async def record(
        self, uuid: str, handshake: methods.Handshake, ipaddr: str, transport: str, at: datetime
    ) -> None:
        """Return once the device's row (online, ``last_seen`` = ``at``) is committed."""
        arrival = Arrival(uuid, handshake, ipaddr, transport, at)
        self._pending.append(arrival)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain(), name="attach-writer")
        # shield: a caller cancelled mid-write must not cancel the batch it shares.
        await asyncio.shield(arrival.done)

    async def close(self) -> None:
        if self._worker is not None:
            await asyncio.gather(self._worker, return_exceptions=True)

    async def _drain(self) -> None:
        # Bounded: every round removes up to BATCH arrivals; new ones come only from new
        # handshakes.
        while self._pending:
            batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
            try:
                records = await self._write(batch)
            except Exception:
                if len(batch) == 1:
                    self._fail(batch, "recording device %s online failed")
                    continue
                log.warning("recording %d devices online together failed: one by one", len(batch))
                records = []
                for arrival in batch:
                    try:
                        records += await self._write([arrival])
                    except Exception:
                        self._fail([arrival], "recording device %s online failed")
            for arrival in batch:
                if not arrival.done.done():
                    arrival.done.set_result(None)
            await self._announce(records)

    async def _write(self, batch: list[Arrival]) -> list[EventRecord]:
        async def write(tx: Tx) -> list[EventRecord]:
            for arrival in batch:
                hs = arrival.handshake
                await tx.devices.upsert(
                    arrival.uuid,
                    serial=hs.serial,
                    name=hs.name,
                    model_id=hs.model_id,
                    version=hs.version,
                    macs=hs.macs,
                    ipaddr=arrival.ipaddr,
                    st_id=hs.st_id,
                    transport=arrival.transport,
                    online=True,
                    at=arrival.at,
                )
            # One event per device: a device that connected twice in one batch is online once.
            items = {arrival.uuid: arrival.event() for arrival in batch}
            return await tx.events.add_many(list(items.values()), at=utcnow())

        # Through Store.write: a shutdown may cancel connection handlers, not this commit.
        return await self._store.write(write)

    @staticmethod
    def _fail(batch: list[Arrival], message: str) -> None:
        for arrival in batch:
            log.exception(message, arrival.uuid)
            if not arrival.done.done():
                arrival.done.set_exception(RuntimeError(f"could not record {arrival.uuid}"))
                arrival.done.exception()  # retrieved here: a cancelled caller may never look

    async def _announce(self, records: list[EventRecord]) -> None:
        for record in records:
            await self._events.announce(
                record.routing_key, record.payload, event_id=record.id, at=record.at
            )
