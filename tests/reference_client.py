"""A device running seed 000's public reference client, transcribed to aio-pika (pika is not here).

It declares, consumes and publishes exactly as the reference does:

* ``exchange_declare('devicescan', exchange_type='fanout')`` — pika's defaults, so *not*
  durable; a server-named ``exclusive`` queue bound to it, consumed without acks;
* on a message whose ``action`` is ``1`` (nothing else): ``queue_declare('hwinfo_queue',
  durable=True)`` — no arguments — and a publish on the default exchange with
  ``delivery_mode=1`` (non-persistent) of ``{"operationid", "sn", "macinfo":
  {"<iface>": {"macaddr": ...}}}``;
* it remembers nothing: a trigger sent twice is answered twice.

A declaration the broker refuses (``PRECONDITION_FAILED``) closes the channel, as it would
for the reference; :attr:`errors` keeps what went wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage


@dataclass
class ReferenceDevice:
    url: str
    sn: Any
    #: (interface, MAC) pairs, reported in this order.
    macs: list[tuple[str, str]]
    #: operationids of the triggers it acted on (in order; repeats included).
    triggered: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _connection: AbstractConnection | None = None
    _channel: AbstractChannel | None = None

    async def start(self) -> None:
        self._connection = await aio_pika.connect(self.url)
        self._channel = await self._connection.channel()
        exchange = await self._channel.declare_exchange(
            "devicescan", aio_pika.ExchangeType.FANOUT, durable=False
        )
        queue = await self._channel.declare_queue(exclusive=True)
        await queue.bind(exchange)
        await queue.consume(self._on_message, no_ack=True)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    def reply(self, operationid: Any) -> dict[str, Any]:
        macinfo = {iface: {"macaddr": mac} for iface, mac in self.macs}
        return {"operationid": operationid, "sn": self.sn, "macinfo": macinfo}

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            data = json.loads(message.body)
            if data["action"] != 1:  # the reference: "only start action is available"
                return
            self.triggered.append(data["operationid"])
            assert self._channel is not None
            await self._channel.declare_queue("hwinfo_queue", durable=True)
            await self._channel.default_exchange.publish(
                aio_pika.Message(
                    json.dumps(self.reply(data["operationid"])).encode(),
                    delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
                ),
                routing_key="hwinfo_queue",
            )
        except Exception as exc:  # the reference logs "Scanning not initiated" and goes on
            self.errors.append(f"{type(exc).__name__}: {exc}")
