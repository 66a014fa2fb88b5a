"""A seed-003 client outside hwfleet: aio-pika only, RPC by direct reply-to, events by queue."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aio_pika

PREFIX = "hwfleet."


class OutsideClient:
    def __init__(self, url: str) -> None:
        self.url = url
        self._pending: dict[str, asyncio.Future[tuple[str, Any]]] = {}
        self.events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

    async def __aenter__(self) -> OutsideClient:
        self.conn = await aio_pika.connect(self.url)
        self.channel = await self.conn.channel()
        replies = await self.channel.get_queue("amq.rabbitmq.reply-to", ensure=False)
        await replies.consume(self._on_reply, no_ack=True)
        queue = await self.channel.declare_queue(exclusive=True, auto_delete=True)
        events = await self.channel.get_exchange(PREFIX + "events", ensure=False)
        for key in ("graph.#", "task.finished.#", "sku.assigned.#"):
            await queue.bind(events, key)
        await queue.consume(self._on_event, no_ack=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.conn.close()

    async def _on_reply(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        future = self._pending.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result((message.type or "", json.loads(message.body)))

    async def _on_event(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.events.put_nowait((message.routing_key or "", json.loads(message.body)))

    async def call(
        self, exchange: str, key: str, params: dict[str, Any], timeout: float = 10.0
    ) -> tuple[str, Any]:
        """``(reply type, body)`` of one RPC: type ``result`` or ``error``."""
        corr = uuid.uuid4().hex
        future: asyncio.Future[tuple[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[corr] = future
        target = await self.channel.get_exchange(PREFIX + exchange, ensure=False)
        await target.publish(
            aio_pika.Message(
                json.dumps(params).encode(),
                correlation_id=corr,
                reply_to="amq.rabbitmq.reply-to",
                content_type="application/json",
            ),
            routing_key=key,
        )
        async with asyncio.timeout(timeout):
            return await future

    async def rpc(
        self, method: str, params: dict[str, Any], exchange: str = "task-graph-runner"
    ) -> Any:
        kind, body = await self.call(exchange, f"methods.{method}", params)
        assert kind == "result", body
        return body

    async def until(self, keys: set[str], timeout: float) -> dict[str, dict[str, Any]]:
        """Collect events until every routing key in ``keys`` has arrived."""
        seen: dict[str, dict[str, Any]] = {}
        async with asyncio.timeout(timeout):
            while not keys <= set(seen):
                key, body = await self.events.get()
                seen[key] = body
        return seen
