"""``memory://``: the embedded bus, an in-process broker with RabbitMQ's semantics.

One :class:`MemoryBus` object is one broker: components that should talk
share the object (there is no process-wide registry). Everything the
behaviour suite checks on RabbitMQ holds here too: topic matching with ``*``
and ``#``, fanout, a private copy per subscriber, durable work queues with
round-robin competing consumers and prefetch, requeue-once-then-dead-letter,
and RPC that answers bad params with an error and names exchange and method
when its deadline passes. Nothing survives the process, by design.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from hwfleet.bus.base import (
    Bus,
    Delivery,
    Handler,
    RpcError,
    RpcHandler,
    RpcTimeoutError,
    Subscription,
)
from hwfleet.bus.codec import (
    DIRECT_REPLY_TO,
    STOP_GRACE,
    dead_letter_headers,
    decode_reply,
    encode_body,
)
from hwfleet.bus.memory_queue import Consumer, Message, Queue
from hwfleet.bus.routing import Matcher, topic_matcher
from hwfleet.bus.rpc import RpcDispatcher
from hwfleet.bus.topology import DEFAULT_PREFIX, ExchangeType, Topology, method_key
from hwfleet.types import JsonObject

log = logging.getLogger(__name__)

#: How many messages a subscriber's private queue hands its (sequential) handler ahead.
SUBSCRIBE_PREFETCH = 256
#: Concurrent requests one serve() handles.
SERVE_PREFETCH = 32
#: Seconds close() lets running handlers finish.
CLOSE_GRACE = 2.0
#: The dead-letter queue keeps the newest this many messages.
DEAD_LETTER_MAX = 10_000


class _Binding:
    __slots__ = ("matcher", "pattern", "queue")

    def __init__(self, pattern: str, matcher: Matcher, queue: Queue) -> None:
        self.pattern = pattern
        self.matcher = matcher
        self.queue = queue


class _Subscription(Subscription):
    def __init__(self, consumer: Consumer, on_cancel: Callable[[_Subscription], None]) -> None:
        self._consumer = consumer
        self._on_cancel = on_cancel
        self._cancelled = False

    async def cancel(self) -> None:
        await self.stop()

    async def stop(self, grace: float = STOP_GRACE) -> None:
        if self._cancelled:
            return
        self._cancelled = True
        await self._consumer.stop(grace)
        self._on_cancel(self)


class MemoryBus(Bus):
    """The in-process broker."""

    def __init__(self, url: str = "memory://", *, prefix: str = DEFAULT_PREFIX) -> None:
        self.url = url
        self.topology = Topology(prefix)
        #: Messages sent to the dead-letter exchange by this bus since it started.
        self.dead_lettered = 0
        self._bindings: dict[str, list[_Binding]] = {}
        self._fanout: set[str] = set()
        self._queues: dict[str, Queue] = {}
        self._subscriptions: set[_Subscription] = set()
        self._waiters: dict[str, asyncio.Future[tuple[str | None, bytes]]] = {}
        self._ids = itertools.count(1)
        self._reply_to = f"{DIRECT_REPLY_TO}.memory"
        self._started = False

    async def start(self) -> None:
        if self._started:
            return
        for name, spec in self.topology.declared():
            self._bindings.setdefault(name, [])
            if spec.type is ExchangeType.FANOUT:
                self._fanout.add(name)
        dlq = self._declare(self.topology.dead_letter_queue, max_length=DEAD_LETTER_MAX)
        self._bind(self.topology.dead_letter_exchange, "#", dlq)
        self._started = True

    async def close(self) -> None:
        # Callers first: a server stuck in a handler must not keep them waiting.
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(ConnectionError("the bus was closed"))
        self._waiters.clear()
        subs = list(self._subscriptions)
        self._subscriptions.clear()
        await asyncio.gather(*(sub.stop(CLOSE_GRACE) for sub in subs))
        self._started = False

    # -- plumbing ---------------------------------------------------------------------------

    def _check(self) -> None:
        if not self._started:
            raise RuntimeError(f"bus {self.url} is not started: await bus.start() first")

    def _declare(
        self, name: str, *, auto_delete: bool = False, max_length: int | None = None
    ) -> Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = Queue(
                name,
                auto_delete=auto_delete,
                max_length=max_length,
                on_empty_consumers=self._on_queue_idle if auto_delete else None,
            )
            self._queues[name] = queue
        return queue

    def _on_queue_idle(self, queue: Queue) -> None:
        # Auto-delete: the queue and its bindings go with its last consumer.
        self._queues.pop(queue.name, None)
        for bindings in self._bindings.values():
            bindings[:] = [b for b in bindings if b.queue is not queue]

    def _bind(self, exchange: str, pattern: str, queue: Queue) -> None:
        bindings = self._bindings[exchange]
        if not any(b.queue is queue and b.pattern == pattern for b in bindings):
            bindings.append(_Binding(pattern, topic_matcher(pattern), queue))

    def _route(self, exchange: str, msg: Message) -> int:
        """Put a copy in every bound queue whose pattern matches; returns how many."""
        bindings = self._bindings[exchange]
        fanout = exchange in self._fanout
        key = msg.routing_key
        routed: list[Queue] = []
        for b in bindings:
            if (fanout or b.matcher(key)) and b.queue not in routed:
                routed.append(b.queue)
        for queue in routed:
            queue.put(msg.copy() if len(routed) > 1 else msg)
        return len(routed)

    def _dead_letter(self, msg: Message, reason: str, origin: str) -> None:
        self.dead_lettered += 1
        log.warning("dead-lettered a message from %s: %s", origin, reason)
        headers = dead_letter_headers(msg.headers, reason, origin)
        dlx = self.topology.dead_letter_exchange
        self._route(dlx, Message(dlx, msg.routing_key, msg.body, headers, msg.correlation_id))

    # -- the Bus API -----------------------------------------------------------------------

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes | JsonObject,
        *,
        persistent: bool = False,
        headers: Mapping[str, Any] | None = None,
        confirm: bool = True,
    ) -> None:
        self._check()  # routing here is synchronous: confirmed or not, it has happened
        name = self.topology.exchange(exchange)
        message = Message(name, routing_key, encode_body(body), dict(headers) if headers else {})
        self._route(name, message)

    async def subscribe(
        self, exchange: str, pattern: str, handler: Handler, *, queue: str | None = None
    ) -> Subscription:
        self._check()
        name = self.topology.exchange(exchange)
        qname = (
            self.topology.queue(queue) if queue else f"{self.topology.prefix}sub.{next(self._ids)}"
        )
        if queue and qname in self._queues:
            raise RuntimeError(f"queue {qname} is in use (exclusive)")
        target = self._declare(qname, auto_delete=True)
        self._bind(name, pattern, target)
        consumer = Consumer(
            target, handler, self._dead_letter, capacity=SUBSCRIBE_PREFETCH, concurrency=1
        )
        target.add(consumer)
        return self._track(consumer)

    async def bind(self, queue: str, exchange: str, pattern: str) -> None:
        self._check()
        target = self._declare(self.topology.queue(queue))
        self._bind(self.topology.exchange(exchange), pattern, target)

    async def send(
        self,
        queue: str,
        body: bytes | JsonObject,
        *,
        persistent: bool = True,
        headers: Mapping[str, Any] | None = None,
    ) -> None:
        self._check()
        target = self._declare(self.topology.queue(queue))
        target.put(Message("", target.name, encode_body(body), dict(headers) if headers else {}))

    async def consume(self, queue: str, handler: Handler, *, prefetch: int = 64) -> Subscription:
        self._check()
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, not {prefetch}")
        target = self._declare(self.topology.queue(queue))
        consumer = Consumer(
            target, handler, self._dead_letter, capacity=prefetch, concurrency=prefetch
        )
        target.add(consumer)
        return self._track(consumer)

    async def call(
        self,
        exchange: str,
        method: str,
        params: JsonObject,
        *,
        timeout: float = 5.0,
    ) -> JsonObject:
        self._check()
        name = self.topology.exchange(exchange)
        key = method_key(method)
        loop = asyncio.get_running_loop()
        corr = str(next(self._ids))
        fut: asyncio.Future[tuple[str | None, bytes]] = loop.create_future()
        self._waiters[corr] = fut
        try:
            request = Message(
                name, key, encode_body(params), {}, corr, self._reply_to, loop.time() + timeout
            )
            if not self._route(name, request):
                raise RpcError(
                    exchange, method, f"no server is bound to {key} on {name}", "no_server"
                )
            try:
                async with asyncio.timeout(timeout):
                    reply_type, body = await fut
            except TimeoutError:
                raise RpcTimeoutError(
                    exchange, method, f"no reply within {timeout:g} s on {name}", "timeout"
                ) from None
        finally:
            self._waiters.pop(corr, None)
        return decode_reply(exchange, method, reply_type, body)

    async def serve(
        self, exchange: str, handlers: Mapping[str, RpcHandler], *, queue: str | None = None
    ) -> Subscription:
        """As :meth:`Bus.serve`; ``queue`` names a separate server group on the same exchange."""
        self._check()
        name = self.topology.exchange(exchange)
        dispatcher = RpcDispatcher(exchange, handlers)
        rpc_queue = self._declare(
            self.topology.queue(queue) if queue else self.topology.rpc_queue(exchange),
            auto_delete=True,
        )
        for key in dispatcher.binding_keys():
            self._bind(name, key, rpc_queue)

        async def answer(delivery: Delivery) -> None:
            if not delivery.reply_to or delivery.correlation_id is None:
                log.warning("%s request %s has no reply_to; dropped", name, delivery.routing_key)
                return
            reply_type, body = await dispatcher.answer(delivery.routing_key, delivery.body)
            self._reply(delivery.reply_to, delivery.correlation_id, reply_type, body)

        consumer = Consumer(
            rpc_queue,
            answer,
            self._dead_letter,
            capacity=SERVE_PREFETCH,
            concurrency=SERVE_PREFETCH,
        )
        rpc_queue.add(consumer)
        return self._track(consumer)

    def _reply(self, reply_to: str, correlation_id: str, reply_type: str, body: bytes) -> None:
        if reply_to != self._reply_to:
            log.warning("RPC reply to unknown %r dropped", reply_to)
            return
        fut = self._waiters.get(correlation_id)
        if fut is not None and not fut.done():
            fut.set_result((reply_type, body))

    def _track(self, consumer: Consumer) -> Subscription:
        sub = _Subscription(consumer, self._subscriptions.discard)
        self._subscriptions.add(sub)
        return sub
