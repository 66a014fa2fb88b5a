"""Bus RPC on RabbitMQ: direct reply-to for callers, one shared queue per server group.

Callers never declare a queue per request (the reference implementation's
defect): one channel consumes ``amq.rabbitmq.reply-to`` without acks and
publishes every request on that same channel, as RabbitMQ requires, matching
replies by correlation id. A request carries the caller's deadline as its
expiration, so a server never runs a call whose caller has already given up,
and it is published *mandatory*, so a call with no server bound fails at once
instead of waiting out its deadline.

Servers of one exchange share ``<prefix><exchange>.rpc`` (auto-delete) and
compete for requests, which is how several controller replicas split the load.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel, AbstractRobustConnection

from hwfleet.bus.base import Delivery, RpcError, RpcTimeoutError
from hwfleet.bus.codec import DIRECT_REPLY_TO, decode_reply, encode_body
from hwfleet.bus.rpc import RpcDispatcher
from hwfleet.bus.topology import method_key
from hwfleet.types import JsonObject

log = logging.getLogger(__name__)

_RETRYABLE = (ConnectionError, aiormq.exceptions.ChannelInvalidStateError)


class RpcClient:
    """The calling side: one direct reply-to consumer, futures keyed by correlation id."""

    def __init__(self, connection: AbstractRobustConnection, user_id: str | None) -> None:
        self._connection = connection
        self._user_id = user_id
        self._channel: AbstractRobustChannel | None = None
        self._waiters: dict[str, asyncio.Future[AbstractIncomingMessage]] = {}

    async def start(self) -> None:
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        # Passive declare registers the pseudo-queue with the robust channel, which then
        # re-consumes it after a reconnect, before any request is published on the new channel.
        reply_queue = await channel.declare_queue(DIRECT_REPLY_TO, passive=True)
        await reply_queue.consume(self._on_reply, no_ack=True)
        self._channel = channel

    async def close(self) -> None:
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(ConnectionError("the bus was closed"))
        self._waiters.clear()
        if self._channel is not None:
            await self._channel.close()

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        fut = self._waiters.get(message.correlation_id or "")
        if fut is not None and not fut.done():
            fut.set_result(message)

    async def call(
        self, exchange: str, physical: str, method: str, params: JsonObject, deadline: float
    ) -> JsonObject:
        timeout = deadline
        if self._channel is None:
            raise RuntimeError("the RPC client is not started")
        key = method_key(method)
        corr = uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        request = aio_pika.Message(
            encode_body(params),
            content_type="application/json",
            correlation_id=corr,
            reply_to=DIRECT_REPLY_TO,
            expiration=timeout,
            user_id=self._user_id,
        )
        target = await self._channel.get_exchange(physical, ensure=False)
        fut: asyncio.Future[AbstractIncomingMessage] = loop.create_future()
        self._waiters[corr] = fut
        try:
            async with asyncio.timeout(timeout):
                await self._publish(target, request, key)
                reply = await fut
        except TimeoutError:
            raise RpcTimeoutError(
                exchange, method, f"no reply within {timeout:g} s on {physical}", "timeout"
            ) from None
        except aiormq.exceptions.PublishError:
            raise RpcError(
                exchange, method, f"no server is bound to {key} on {physical}", "no_server"
            ) from None
        finally:
            self._waiters.pop(corr, None)
        return decode_reply(exchange, method, reply.type, reply.body)

    async def _publish(
        self, target: aio_pika.abc.AbstractExchange, request: aio_pika.Message, key: str
    ) -> None:
        assert self._channel is not None
        while True:  # bounded by the caller's deadline
            try:
                await self._channel.ready()
                await target.publish(request, routing_key=key, mandatory=True)
                return
            except _RETRYABLE as exc:
                log.debug("RPC publish on %s failed (%s); retrying", target.name, exc)
                await asyncio.sleep(0.1)


def server_handler(
    dispatcher: RpcDispatcher,
    channel: AbstractRobustChannel,
    user_id: str | None,
) -> Callable[[Delivery], Awaitable[None]]:
    """A consumer handler that answers each request on the server's own channel."""

    async def answer(delivery: Delivery) -> None:
        if not delivery.reply_to or delivery.correlation_id is None:
            log.warning(
                "%s request %s has no reply_to; dropped", dispatcher.exchange, delivery.routing_key
            )
            return
        reply_type, body = await dispatcher.answer(delivery.routing_key, delivery.body)
        reply = aio_pika.Message(
            body,
            content_type="application/json",
            correlation_id=delivery.correlation_id,
            type=reply_type,
            user_id=user_id,
        )
        try:
            # Not mandatory: RabbitMQ returns mandatory replies to direct reply-to even
            # when it delivered them, and a caller that left has nothing to return to.
            await channel.default_exchange.publish(
                reply, routing_key=delivery.reply_to, mandatory=False
            )
        except _RETRYABLE as exc:
            # The caller's reply-to consumer lived on a connection that is gone too.
            log.info("could not reply to %s %s: %s", dispatcher.exchange, delivery.routing_key, exc)

    return answer
