"""The agent's AMQP carrier: commands, scans and replies through RabbitMQ.

The agent takes commands on its own queue (bound to the ``agents`` exchange
with its uuid) and the ``devicescan`` fanout on the same kind of exclusive
queue; it sends its own commands (handshake, heartbeats, log, task_status) to
the shared ``agent.inbound`` work queue as persistent messages, and replies
to a controller replica on that replica's routing key. The bus restores its
subscriptions after a broker restart; the link then identifies itself again.

With per-device credentials (``per_device=True``) the device may touch only
its own resources: its queues are named ``agent.<uuid>`` and
``agent.<uuid>.scan``, and everything it sends goes to the ``uplink`` topic
exchange under routing keys starting with its uuid (hwfleet.protocol.carrier).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

import msgspec

from hwfleet.agent.commands.core import scan
from hwfleet.agent.links.backoff import Backoff
from hwfleet.agent.runtime import AgentRuntime
from hwfleet.bus.base import Bus, Delivery, RejectedMessageError
from hwfleet.protocol import envelope, methods
from hwfleet.protocol.carrier import (
    AGENTS_EXCHANGE,
    CONTROLLERS_EXCHANGE,
    DEVICE_HEADER,
    INBOUND_QUEUE,
    REPLY_HEADER,
    UPLINK_EXCHANGE,
    UPLINK_HWINFO,
    UPLINK_INBOUND,
    UPLINK_REPLY,
    device_queue,
    uplink_key,
)
from hwfleet.protocol.errors import FatalProtocolError
from hwfleet.protocol.inventory import ScanParams
from hwfleet.protocol.session import Session

log = logging.getLogger(__name__)

#: Scans whose operationids a device remembers, to answer a re-sent trigger once.
RECENT_SCANS = 64


class BusLink:
    """Keeps an agent identified on the bus; one per device (devices may share a Bus)."""

    def __init__(
        self,
        runtime: AgentRuntime,
        bus: Bus,
        *,
        heartbeat: float = 15.0,
        reconnect_min: float = 0.5,
        reconnect_max: float = 30.0,
        call_timeout: float = 10.0,
        per_device: bool = False,
    ) -> None:
        self.runtime = runtime
        self.bus = bus
        self._uuid = runtime.info.uuid
        self._per_device = per_device
        self._headers = {DEVICE_HEADER: self._uuid}
        self._heartbeat = heartbeat
        self._backoff = Backoff(reconnect_min, reconnect_max)
        self._call_timeout = call_timeout
        self.connected = asyncio.Event()
        self._replicas: dict[str, Session[AgentRuntime]] = {}
        self._primary: Session[AgentRuntime] = Session(
            self._send_inbound,
            runtime.registry,
            runtime,
            peer="controller (bus)",
            default_timeout=call_timeout,
        )
        self._stopping = asyncio.Event()
        #: operationids of the scans this device answered lately (oldest first).
        self._answered: OrderedDict[int, None] = OrderedDict()

    async def run(self) -> None:
        """Subscribe, identify, heartbeat; re-identify whenever a heartbeat fails."""
        own = self._per_device
        subscriptions = [
            await self.bus.subscribe(
                AGENTS_EXCHANGE,
                self._uuid,
                self._on_message,
                queue=device_queue(self._uuid) if own else None,
            ),
            await self.bus.subscribe(
                "devicescan",
                "#",
                self._on_scan,
                queue=device_queue(self._uuid, "scan") if own else None,
            ),
        ]
        try:
            while not self._stopping.is_set():
                try:
                    await self._primary.call(
                        methods.HANDSHAKE, self.runtime.handshake(), self._call_timeout
                    )
                except Exception as exc:
                    log.warning("bus handshake failed (%s); retrying", exc)
                    await self._pause(self._backoff.next())
                    continue
                self._backoff.reset()
                self.runtime.attach(self._primary)
                self.connected.set()
                await self._beat_until_failure()
                self.connected.clear()
                self.runtime.attach(None)
        finally:
            for subscription in subscriptions:
                await subscription.cancel()

    def stop(self) -> None:
        self._stopping.set()

    async def _pause(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        except TimeoutError:
            pass

    async def _beat_until_failure(self) -> None:
        while not self._stopping.is_set():
            await self._pause(self._heartbeat)
            if self._stopping.is_set():
                return
            try:
                await self._primary.call(methods.PING, {}, self._call_timeout)
            except Exception as exc:
                log.warning("bus heartbeat failed (%s): identifying again", exc)
                return

    async def _send_inbound(self, frame: bytes) -> None:
        if self._per_device:
            key = uplink_key(self._uuid, UPLINK_INBOUND)
            await self.bus.publish(
                UPLINK_EXCHANGE, key, frame, persistent=True, headers=self._headers
            )
            return
        await self.bus.send(INBOUND_QUEUE, frame, persistent=True, headers=self._headers)

    def _replica(self, replica: str) -> Session[AgentRuntime]:
        session = self._replicas.get(replica)
        if session is None:

            async def send(frame: bytes) -> None:
                if self._per_device:
                    key = uplink_key(self._uuid, UPLINK_REPLY, replica)
                    await self.bus.publish(UPLINK_EXCHANGE, key, frame, headers=self._headers)
                    return
                await self.bus.publish(CONTROLLERS_EXCHANGE, replica, frame, headers=self._headers)

            session = Session(send, self.runtime.registry, self.runtime, peer=f"replica {replica}")
            self._replicas[replica] = session
        return session

    async def _on_message(self, delivery: Delivery) -> None:
        try:
            message = envelope.decode(delivery.body)
        except (FatalProtocolError, envelope.BadEnvelopeError) as exc:
            raise RejectedMessageError(f"not a protocol envelope: {exc}") from None
        if isinstance(message, envelope.Command):
            replica = delivery.headers.get(REPLY_HEADER)
            if isinstance(replica, bytes):
                replica = replica.decode()
            if not isinstance(replica, str) or not replica:
                raise RejectedMessageError(f"a command without {REPLY_HEADER}: nowhere to answer")
            await self._replica(replica).handle_message(message)
        else:
            await self._primary.handle_message(message)

    async def _on_scan(self, delivery: Delivery) -> None:
        try:
            params = msgspec.json.decode(delivery.body, type=ScanParams)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("ignoring a devicescan message: %s", exc)
            return
        if not params.is_scan():
            return
        if params.operationid in self._answered:
            # The controller sends a running scan's trigger again (its broker may have lost
            # the first with our queue): we answered it, and our reply is the broker's.
            log.debug("scan %d: answered already", params.operationid)
            return
        reply: dict[str, Any] = await scan(self.runtime, params)
        if self._per_device:
            key = uplink_key(self._uuid, UPLINK_HWINFO)
            await self.bus.publish(
                UPLINK_EXCHANGE, key, reply, persistent=True, headers=self._headers
            )
        else:
            await self.bus.send("hwinfo_queue", reply, persistent=True)
        # Only once the broker confirmed the reply: a send that failed leaves the scan to
        # be answered when the trigger comes again.
        self._answered[params.operationid] = None
        while len(self._answered) > RECENT_SCANS:
            self._answered.popitem(last=False)
