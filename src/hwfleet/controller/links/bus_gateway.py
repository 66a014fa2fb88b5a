"""The AMQP carrier on the controller side: agents that talk through the bus.

Any replica handles an agent's commands (they arrive on a shared work queue);
each replica gets the replies to its own calls on its own routing key. A
replica that has not seen a device's handshake adopts it from the store the
first time the device speaks to it, so presence and calls work on every
replica.

Devices with per-device credentials send through the ``uplink`` exchange; the
gateway binds ``agent.inbound`` and ``hwinfo_queue`` to it and takes its
replica's replies from it, and checks every message's broker-validated sender
(:mod:`hwfleet.controller.links.senders`).
"""

from __future__ import annotations

import logging
import uuid as uuidlib
from typing import TYPE_CHECKING

from hwfleet.bus.base import Bus, Delivery, RejectedMessageError, Subscription
from hwfleet.bus.topology import HWINFO_QUEUE
from hwfleet.controller.devices import Connection, DeviceRegistry
from hwfleet.controller.links.agent_methods import AgentContext, AgentMethods
from hwfleet.controller.links.senders import SenderCheck
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
    uplink_key,
)
from hwfleet.protocol.errors import FatalProtocolError
from hwfleet.protocol.session import Session

if TYPE_CHECKING:
    from hwfleet.store import Store

log = logging.getLogger(__name__)


def device_of(delivery: Delivery) -> str:
    """The sending device, from the header; refuses a message that does not say."""
    raw = delivery.headers.get(DEVICE_HEADER)
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        return str(uuidlib.UUID(str(raw)))
    except ValueError:
        raise RejectedMessageError(f"{DEVICE_HEADER} header {raw!r} is not a device uuid") from None


class BusGateway:
    """One protocol session per bus-connected device, per controller replica."""

    def __init__(
        self,
        bus: Bus,
        methods: AgentMethods,
        devices: DeviceRegistry,
        store: Store,
        *,
        replica_id: str,
        call_timeout: float = 10.0,
        senders: SenderCheck | None = None,
    ) -> None:
        self._bus = bus
        self._senders = senders or SenderCheck(strict=False, controller_user=None)
        self._methods = methods
        self._devices = devices
        self._store = store
        self.replica_id = replica_id
        self._call_timeout = call_timeout
        self._sessions: dict[str, Session[AgentContext]] = {}
        self._subscriptions: list[Subscription] = []

    async def start(self) -> None:
        # Durable bindings: what devices send through the uplink reaches the shared queues.
        await self._bus.bind(INBOUND_QUEUE, UPLINK_EXCHANGE, uplink_key("*", UPLINK_INBOUND))
        await self._bus.bind(HWINFO_QUEUE, UPLINK_EXCHANGE, uplink_key("*", UPLINK_HWINFO))
        self._subscriptions.append(
            await self._bus.subscribe(CONTROLLERS_EXCHANGE, self.replica_id, self._on_reply)
        )
        self._subscriptions.append(
            await self._bus.subscribe(
                UPLINK_EXCHANGE, uplink_key("*", UPLINK_REPLY, self.replica_id), self._on_reply
            )
        )
        self._subscriptions.append(
            await self._bus.consume(INBOUND_QUEUE, self._on_inbound, prefetch=256)
        )

    async def close(self) -> None:
        for subscription in self._subscriptions:
            await subscription.cancel()
        for session in self._sessions.values():
            session.close()

    def _session(self, device: str) -> Session[AgentContext]:
        session = self._sessions.get(device)
        if session is None or session.closed:
            ctx = AgentContext(ipaddr="", transport="amqp", drop=lambda: self._forget(device))
            ctx.cert_uuid = device

            async def send(frame: bytes) -> None:
                await self._bus.publish(
                    AGENTS_EXCHANGE, device, frame, headers={REPLY_HEADER: self.replica_id}
                )

            session = Session(
                send,
                self._methods.registry,
                ctx,
                peer=f"amqp:{device}",
                default_timeout=self._call_timeout,
            )
            ctx.session = session
            self._sessions[device] = session
        return session

    def _forget(self, device: str) -> None:
        session = self._sessions.pop(device, None)
        if session is not None:
            session.close()

    async def _on_inbound(self, delivery: Delivery) -> None:
        device = device_of(delivery)
        self._senders.device(delivery, device)
        try:
            message = envelope.decode(delivery.body)
        except FatalProtocolError as exc:
            raise RejectedMessageError(f"not a protocol envelope: {exc}") from None
        except envelope.BadEnvelopeError as exc:
            await self._session(device).handle_message(
                envelope.error(exc.message_id, exc.msg, exc.code)
            )
            return
        session = self._session(device)
        is_handshake = (
            isinstance(message, envelope.Command)
            and methods.canonical(message.method) == methods.HANDSHAKE
        )
        if session.ctx.uuid is None and not is_handshake:
            await self._adopt(session.ctx, device)
        await session.handle_message(message)

    async def _on_reply(self, delivery: Delivery) -> None:
        device = device_of(delivery)
        self._senders.device(delivery, device)
        session = self._sessions.get(device)
        if session is None:
            return  # a reply to a call this replica no longer waits for
        try:
            await session.handle_message(envelope.decode(delivery.body))
        except (FatalProtocolError, envelope.BadEnvelopeError) as exc:
            raise RejectedMessageError(f"not a protocol envelope: {exc}") from None

    async def _adopt(self, ctx: AgentContext, device: str, *, only_amqp: bool = False) -> bool:
        """Reach a device that identified itself to another replica (nothing is recorded:
        the store already knows it, and its heartbeats here keep it online)."""
        async with self._store.tx(readonly=True) as tx:
            record = await tx.devices.get(device)
        if record is None or (only_amqp and record.transport != "amqp"):
            return False  # unknown: its commands are refused until it sends a handshake
        hs = methods.Handshake(
            uuid=record.uuid,
            serial=record.serial,
            name=record.name,
            model_id=record.model_id,
            version=record.version,
            macs=list(record.macs),
            st_id=record.st_id,
            ipaddr=record.ipaddr,
        )
        ctx.uuid = device
        assert ctx.session is not None
        conn = Connection(
            uuid=device,
            session=ctx.session,
            transport="amqp",
            ipaddr=record.ipaddr,
            handshake=hs,
            drop=ctx.drop,
        )
        self._devices.adopt(conn)
        return True

    async def reach(self, device: str) -> Connection | None:
        """A session with an AMQP device this replica has not heard from yet (for calls)."""
        session = self._session(device)
        if session.ctx.uuid is None and not await self._adopt(session.ctx, device, only_amqp=True):
            self._forget(device)
            return None
        return self._devices.get(device)
