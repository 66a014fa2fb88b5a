"""Carries the ``devicescan`` fanout to stream-connected agents and their replies back.

AMQP agents bind their own queue to ``devicescan``; agents on the stream
gateway cannot, so each controller replica forwards the broadcast to the
agents connected to it as a ``scan`` command and puts each reply on
``hwinfo_queue`` — after which a scan cannot tell the carriers apart.

A broadcast reaches only the stream agents connected at that moment (an AMQP
agent's queue keeps it; a socket does not). So when a stream agent attaches,
it is also sent every running scan that expects it and has no result from it
yet: an agent reconnecting to a restarted controller (whose resumed scans are
broadcast before any agent is back) or after a network blip still answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from hwfleet.controller.devices import Connection, DeviceRegistry
from hwfleet.protocol import methods
from hwfleet.protocol.inventory import ScanParams

if TYPE_CHECKING:
    from hwfleet.bus.base import Bus, Delivery, Subscription

log = logging.getLogger(__name__)


class ScanBridge:
    def __init__(self, bus: Bus, devices: DeviceRegistry, *, call_timeout: float = 30.0) -> None:
        self._bus = bus
        self._devices = devices
        self._timeout = call_timeout
        self._subscription: Subscription | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        #: operationids of the running scans still waiting for a device (the scan service's).
        self.unanswered: Callable[[str], list[int]] = lambda _uuid: []
        #: Whether this replica knows the device answered the scan (a re-sent trigger skips it).
        self.answered: Callable[[str, int], bool] = lambda _uuid, _op: False
        #: (uuid, operationid) forwarded and not yet answered: a re-sent trigger waits for it.
        self._forwarding: set[tuple[str, int]] = set()

    async def start(self) -> None:
        self._subscription = await self._bus.subscribe("devicescan", "#", self._on_broadcast)
        self._devices.on_attach(self._on_attach)

    async def close(self) -> None:
        if self._subscription is not None:
            await self._subscription.cancel()
        for task in list(self._inflight):
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _on_broadcast(self, delivery: Delivery) -> None:
        try:
            params = msgspec.json.decode(delivery.body, type=ScanParams)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("ignoring a devicescan message that is not a scan command")
            return
        if not params.is_scan():
            return
        operationid = params.operationid
        count = 0
        for conn in list(self._devices.connections()):
            if conn.transport != "stream" or self.answered(conn.uuid, operationid):
                continue
            count += self._spawn(conn.uuid, operationid)
        log.info("forwarded scan %s to %d stream agents", operationid, count)

    def _on_attach(self, conn: Connection) -> None:
        if conn.transport != "stream":
            return
        for operationid in self.unanswered(conn.uuid):
            log.info(
                "forwarding running scan %s to %s, which (re)connected", operationid, conn.uuid
            )
            self._spawn(conn.uuid, operationid)

    def _spawn(self, uuid: str, operationid: int) -> int:
        """Forward one scan to one agent, unless it is being forwarded already; 1 if sent."""
        key = (uuid, operationid)
        if key in self._forwarding:
            return 0
        self._forwarding.add(key)
        task = asyncio.create_task(self._forward(uuid, operationid))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        task.add_done_callback(lambda _: self._forwarding.discard(key))
        return 1

    async def _forward(self, uuid: str, operationid: int) -> None:
        # hwfleet's own word for the action: stream agents of earlier versions know only it.
        command = {"operationid": operationid, "action": "scan"}
        try:
            reply = await self._devices.call(uuid, methods.SCAN, command, self._timeout)
        except Exception as exc:
            # The scan's quiet timeout accounts for a device that never answers.
            log.warning("scan of %s failed: %s", uuid, exc)
            return
        claimed = reply.get("uuid")
        if claimed not in (None, "", uuid):
            # The connection's uuid is the authenticated one: a reply never speaks for another.
            log.warning("stream agent %s answered scan %s as %r", uuid, operationid, claimed)
        reply["uuid"] = uuid
        await self._bus.send("hwinfo_queue", reply, persistent=True)
