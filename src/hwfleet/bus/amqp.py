"""``amqp://`` / ``amqps://``: the bus on RabbitMQ through aio-pika's robust connection.

* Publisher confirms on the publishing channel; ``send`` is persistent by
  default, ``publish`` when asked. A publish interrupted by a lost connection
  waits for the reconnect and is sent again (at-least-once), up to
  ``publish_timeout``.
* The topology of DESIGN §4 is declared at start, on a robust channel, so it is
  declared again after a broker restart; robust channels also restore every
  queue, binding and consumer, with its prefetch.
* Work queues are durable quorum queues (RabbitMQ >= 3.8) whose dead-letter
  exchange is ``<prefix>dead-letter``. hwfleet dead-letters explicitly
  (publish with the reason header, confirmed, then ack); the queue argument is
  the safety net for messages the broker itself drops.
* Seed 000's two names are declared exactly as its reference device client
  declares them, so those devices and hwfleet can share them: ``devicescan`` a
  non-durable fanout, ``hwinfo_queue`` a durable queue without arguments
  (``hwinfo_quorum=True`` makes it a quorum queue, which reference devices
  cannot declare). Anything else that queue needs comes from a broker policy
  (:mod:`hwfleet.bus.amqp_legacy` finds and migrates what earlier versions left).
* Subscriptions get an exclusive auto-delete queue each (a unique client-chosen
  name, or the one the caller gives, so the robust channel can re-declare it
  after a reconnect).
* ``declare=False`` is a device's bus (per-device credentials): it declares
  nothing but its own subscription queues, refers to exchanges without
  declaring them, has no RPC client, and drops (logs) what its handlers reject
  instead of publishing to the dead-letter exchange it may not write to.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection

from hwfleet.bus.amqp_batch import publish_unconfirmed
from hwfleet.bus.amqp_connect import BusUnavailableError, broker_address, connect
from hwfleet.bus.amqp_consumer import AmqpConsumer, deliver_frame
from hwfleet.bus.amqp_legacy import declare_seed_exchange, migrate_seed_queue
from hwfleet.bus.amqp_rpc import RpcClient, server_handler
from hwfleet.bus.base import Bus, Handler, RpcHandler, Subscription
from hwfleet.bus.codec import dead_letter_headers, encode_body
from hwfleet.bus.rpc import RpcDispatcher
from hwfleet.bus.topology import DEFAULT_PREFIX, DEVICESCAN, HWINFO_QUEUE, ExchangeType, Topology
from hwfleet.types import JsonObject

log = logging.getLogger(__name__)

SUBSCRIBE_PREFETCH = 256
SERVE_PREFETCH = 32
DEAD_LETTER_MAX = 100_000
#: Seconds close() lets running handlers settle.
CLOSE_GRACE = 2.0

_RETRYABLE = (
    ConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.ChannelClosed,
)


class AmqpBus(Bus):
    """The bus on a RabbitMQ broker."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        connect_timeout: float | None = None,
        reconnect_interval: float = 1.0,
        publish_timeout: float = 30.0,
        quorum: bool = True,
        declare: bool = True,
        hwinfo_quorum: bool = False,
    ) -> None:
        self.url = url
        self.topology = Topology(prefix)
        #: Messages this bus sent to the dead-letter exchange since it started.
        self.dead_lettered = 0
        #: Times the robust connection re-connected (and restored the topology and consumers).
        self.reconnects = 0
        self._connect_timeout = connect_timeout
        self._reconnect_interval = reconnect_interval
        self._publish_timeout = publish_timeout
        self._quorum = quorum
        self._declare = declare
        self._hwinfo_quorum = hwinfo_quorum
        # Stamping user_id lets receivers trust the sender: RabbitMQ refuses a mismatch.
        self._user_id = urlsplit(url).username or None
        self._connection: AbstractRobustConnection | None = None
        self._pub: AbstractRobustChannel | None = None
        #: Publishes without confirms (``publish(confirm=False)``); opened on first use.
        self._notify: AbstractRobustChannel | None = None
        self._notify_lock = asyncio.Lock()
        self._queue_kwargs: dict[str, dict[str, Any]] = {}
        #: Work queues bound by :meth:`bind`, on the publishing channel: the robust queue
        #: keeps its bindings, which :meth:`_restore_work_queue` declares again.
        self._bound: dict[str, aio_pika.abc.AbstractRobustQueue] = {}
        self._subs: set[AmqpConsumer] = set()
        self._rpc: RpcClient | None = None

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._connection is not None:
            return
        conn = await connect(
            self.url,
            connect_timeout=self._connect_timeout,
            reconnect_interval=self._reconnect_interval,
            name=f"hwfleet {self.topology.prefix}",
        )
        self._connection = conn
        conn.reconnect_callbacks.add(self._on_reconnect)
        try:
            await self._declare_topology(conn)
        except BaseException:
            await self.close()  # never leave a half-started bus holding a connection
            raise
        log.info("bus connected to %s (prefix %r)", self._where(), self.topology.prefix)

    async def _declare_topology(self, conn: AbstractRobustConnection) -> None:
        self._pub = await conn.channel(publisher_confirms=True, on_return_raises=True)
        if not self._declare:
            return  # a device's own user may not declare: the controller has
        for name, spec in self.topology.declared():
            if name == DEVICESCAN and not await declare_seed_exchange(conn, name):
                continue  # an older durable one that cannot be replaced now: used as it is
            await self._pub.declare_exchange(
                name, aio_pika.ExchangeType(spec.type.value), durable=spec.durable
            )
        dlq = self.topology.dead_letter_queue
        await self._ensure_queue(
            dlq, {"x-max-length": DEAD_LETTER_MAX, "x-overflow": "drop-head"}, dead_letter=False
        )
        queue = await self._pub.declare_queue(dlq, **self._queue_kwargs[dlq])
        await queue.bind(self.topology.dead_letter_exchange, routing_key="#")
        self._rpc = RpcClient(conn, self._user_id)
        await self._rpc.start()

    async def close(self) -> None:
        # Callers first: a server stuck in a handler must not keep them waiting.
        if self._rpc is not None:
            await self._rpc.close()
            self._rpc = None
        await asyncio.gather(*(sub.stop(CLOSE_GRACE) for sub in list(self._subs)))
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
        self._pub = self._notify = None
        self._queue_kwargs.clear()
        self._bound.clear()

    def _on_reconnect(self, *_: object) -> None:
        self.reconnects += 1
        log.warning("bus reconnected to %s; topology and consumers restored", self._where())

    def _where(self) -> str:
        return broker_address(self.url)

    def _conn(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise RuntimeError(f"bus {self._where()} is not started: await bus.start() first")
        return self._connection

    # -- publishing -------------------------------------------------------------------------

    def _connection_ready(self) -> bool:
        return self._connection is not None and self._connection.connected.is_set()

    @property
    def connected(self) -> bool:
        """The connection to the broker is up now (False while it reconnects)."""
        return self._connection_ready()

    def _properties(
        self, persistent: bool, headers: Mapping[str, Any] | None
    ) -> aiormq.spec.Basic.Properties:
        # Built directly rather than through aio_pika.Message, whose attribute guards cost
        # as much as the rest of a publish; the fields are those aio-pika would send.
        return aiormq.spec.Basic.Properties(
            delivery_mode=2 if persistent else 1,
            headers=dict(headers) if headers else None,
            user_id=self._user_id,
        )

    async def _publish(
        self,
        exchange: str,
        body: bytes,
        properties: aiormq.spec.Basic.Properties,
        key: str,
        mandatory: bool,
    ) -> None:
        """Publish to the broker exchange named and wait for the confirm, riding out a
        reconnect (at-least-once)."""
        assert self._pub is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._publish_timeout
        while True:
            try:
                # The robust channel blocks until it has reconnected: bound that wait (a
                # timer per publish costs more than the check, so only when it can wait).
                up = not self._pub.is_closed and self._connection_ready()
                left = max(deadline - loop.time(), 0.01)
                async with contextlib.nullcontext() if up else asyncio.timeout(left):
                    channel = await self._pub.get_underlay_channel()
                # Straight to the aiormq channel: aio-pika's Exchange.publish doubles the
                # CPU of a publish (measured: 173 vs 88 us), and a scan publishes one event
                # per device. aiormq bounds the publish and its confirm by ``timeout``.
                await channel.basic_publish(
                    body,
                    exchange=exchange,
                    routing_key=key,
                    properties=properties,
                    mandatory=mandatory,
                    timeout=max(deadline - loop.time(), 0.01),
                )
                return
            except aiormq.exceptions.PublishError:
                raise  # unroutable: the caller decides
            except (*_RETRYABLE, aiormq.exceptions.DeliveryError, TimeoutError) as exc:
                if loop.time() >= deadline:
                    raise BusUnavailableError(
                        f"could not publish to {exchange or 'the default exchange'} {key!r}"
                        f" within {self._publish_timeout:g} s: {exc}"
                    ) from exc
                log.info("publish to %s %r interrupted (%s); retrying", exchange, key, exc)
                # Wait for the robust connection to come back (bounded), then try again.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._pub.ready(), max(deadline - loop.time(), 0.01))
                await asyncio.sleep(0.05)

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
        self._conn()
        target = self.topology.exchange(exchange)
        properties = self._properties(persistent, headers)
        if not confirm:
            channel = await self._unconfirmed_channel()
            await channel.basic_publish(
                encode_body(body),
                exchange=target,
                routing_key=routing_key,
                properties=properties,
                timeout=self._publish_timeout,
            )
            return
        await self._publish(target, encode_body(body), properties, routing_key, False)

    async def notify_many(
        self, exchange: str, messages: Sequence[tuple[str, bytes | JsonObject]]
    ) -> None:
        """As :meth:`Bus.notify_many`: the messages go out together (:mod:`.amqp_batch`)."""
        self._conn()
        if not messages:
            return
        target = self.topology.exchange(exchange)
        encoded = [(key, encode_body(body)) for key, body in messages]
        channel = await self._unconfirmed_channel()
        assert isinstance(channel, aiormq.Channel)
        properties = self._properties(False, None)
        await publish_unconfirmed(channel, target, encoded, properties, self._publish_timeout)

    async def _unconfirmed_channel(self) -> aiormq.abc.AbstractChannel:
        # Opened on first use: only a controller announcing events needs it, and every
        # agent's bus opening one more channel would cost the broker one per device.
        if self._notify is None:  # the lock only for the first publishes, not every event
            async with self._notify_lock:
                if self._notify is None:
                    self._notify = await self._conn().channel(publisher_confirms=False)
        if self._notify.is_closed or not self._connection_ready():
            raise BusUnavailableError(
                f"not connected to {self._where()}: the notification is dropped"
            )
        return await self._notify.get_underlay_channel()

    async def send(
        self,
        queue: str,
        body: bytes | JsonObject,
        *,
        persistent: bool = True,
        headers: Mapping[str, Any] | None = None,
    ) -> None:
        self._conn()
        assert self._pub is not None
        name = self.topology.queue(queue)
        await self._ensure_queue(name)
        data, properties = encode_body(body), self._properties(persistent, headers)
        try:
            await self._publish("", data, properties, name, True)
        except aiormq.exceptions.PublishError:
            # Someone deleted the queue: declare it again rather than lose the message.
            self._queue_kwargs.pop(name, None)
            await self._ensure_queue(name)
            await self._publish("", data, properties, name, True)

    async def _dead_letter(
        self, message: aiormq.abc.DeliveredMessage, reason: str, origin: str
    ) -> None:
        self.dead_lettered += 1
        if not self._declare:
            log.warning("dropped a message from %s: %s", origin, reason)
            return
        log.warning("dead-lettered a message from %s: %s", origin, reason)
        props = message.header.properties
        properties = aiormq.spec.Basic.Properties(
            headers=dead_letter_headers(props.headers or {}, reason, origin),
            content_type=props.content_type,
            correlation_id=props.correlation_id,
            delivery_mode=2,
        )
        dlx = self.topology.dead_letter_exchange
        key = deliver_frame(message).routing_key or ""
        await self._publish(dlx, message.body, properties, key, False)

    # -- queues and consumers ---------------------------------------------------------------

    def _queue_arguments(
        self, name: str, extra: Mapping[str, Any] | None, dead_letter: bool
    ) -> dict[str, Any]:
        if name == HWINFO_QUEUE:  # as the reference devices declare it (dead letters: policy)
            return {"x-queue-type": "quorum"} if self._hwinfo_quorum else {}
        args: dict[str, Any] = dict(extra or {})
        if self._quorum:
            args["x-queue-type"] = "quorum"
        if dead_letter:
            args["x-dead-letter-exchange"] = self.topology.dead_letter_exchange
        return args

    async def _ensure_queue(
        self,
        name: str,
        extra: Mapping[str, Any] | None = None,
        *,
        dead_letter: bool = True,
        migrate: bool = False,
    ) -> dict[str, Any]:
        """Declare a durable work queue once; settle how consumers must declare it.

        ``migrate`` (consumers only): an ``hwinfo_queue`` an earlier version declared
        with other arguments is replaced when the broker can do so without losing a
        message; otherwise it is used as it is, and the log says what to do.
        """
        known = self._queue_kwargs.get(name)
        if known is not None:
            return known
        args = self._queue_arguments(name, extra, dead_letter)
        conn = self._conn()
        await conn.ready()
        assert conn.transport is not None
        raw = conn.transport.connection
        # A plain aiormq channel: a refused declare closes it, and it must not be "restored".
        probe = await raw.channel()
        try:
            await probe.queue_declare(name, durable=True, arguments=args)
            kwargs: dict[str, Any] = {"durable": True, "arguments": args}
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            if name == HWINFO_QUEUE and migrate and await migrate_seed_queue(self.url, name, args):
                kwargs = {"durable": True, "arguments": args}
            else:
                if name != HWINFO_QUEUE or not migrate:  # (a consumer's failed migration logs)
                    log.warning(
                        "queue %s exists with other arguments; using it as it is (%s)", name, exc
                    )
                kwargs = {"passive": True}
        finally:
            if not probe.is_closed:
                await probe.close()
        self._queue_kwargs[name] = kwargs
        return kwargs

    def _consumer(
        self,
        channel: AbstractRobustChannel,
        queue: aio_pika.abc.AbstractRobustQueue,
        handler: Handler,
        *,
        ordered: bool,
        restore: Callable[[], Awaitable[object]] | None = None,
    ) -> AmqpConsumer:
        consumer = AmqpConsumer(
            channel,
            queue,
            handler,
            self._dead_letter,
            ordered=ordered,
            on_cancel=self._subs.discard,
            restore=restore,
        )
        self._subs.add(consumer)
        return consumer

    async def subscribe(
        self, exchange: str, pattern: str, handler: Handler, *, queue: str | None = None
    ) -> Subscription:
        conn = self._conn()
        name = self.topology.exchange(exchange)
        fanout = self.topology.spec(exchange).type is ExchangeType.FANOUT
        channel = await conn.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=SUBSCRIBE_PREFETCH)
        private = await channel.declare_queue(
            self.topology.queue(queue)
            if queue
            else f"{self.topology.prefix}sub.{exchange}.{uuid.uuid4().hex[:16]}",
            exclusive=True,
            auto_delete=True,
        )
        await private.bind(name, routing_key="" if fanout else pattern)
        consumer = self._consumer(channel, private, handler, ordered=True)
        await consumer.start()
        return consumer

    async def bind(self, queue: str, exchange: str, pattern: str) -> None:
        self._conn()
        assert self._pub is not None
        name = self.topology.queue(queue)
        kwargs = await self._ensure_queue(name)
        declared = self._bound.get(name)
        if declared is None:
            declared = self._bound[name] = await self._pub.declare_queue(name, **kwargs)
        await declared.bind(self.topology.exchange(exchange), routing_key=pattern)

    async def _restore_work_queue(self, name: str) -> None:
        """Declare a deleted work queue again (its arguments settled afresh), and its bindings."""
        self._queue_kwargs.pop(name, None)
        await self._ensure_queue(name, migrate=True)
        bound = self._bound.get(name)
        if bound is not None:
            await bound.restore()

    async def consume(self, queue: str, handler: Handler, *, prefetch: int = 64) -> Subscription:
        conn = self._conn()
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, not {prefetch}")
        name = self.topology.queue(queue)
        kwargs = await self._ensure_queue(name, migrate=True)
        channel = await conn.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=prefetch)
        declared = await channel.declare_queue(name, **kwargs)
        consumer = self._consumer(
            channel,
            declared,
            handler,
            ordered=False,
            restore=functools.partial(self._restore_work_queue, name),
        )
        await consumer.start()
        return consumer

    # -- RPC --------------------------------------------------------------------------------

    async def call(
        self,
        exchange: str,
        method: str,
        params: JsonObject,
        *,
        timeout: float = 5.0,
    ) -> JsonObject:
        self._conn()
        if self._rpc is None:
            raise RuntimeError("a device bus (declare=False) makes no RPC calls")
        physical = self.topology.exchange(exchange)
        return await self._rpc.call(exchange, physical, method, params, timeout)

    async def serve(
        self, exchange: str, handlers: Mapping[str, RpcHandler], *, queue: str | None = None
    ) -> Subscription:
        """As :meth:`Bus.serve`; ``queue`` names a separate server group on the same exchange."""
        conn = self._conn()
        name = self.topology.exchange(exchange)
        dispatcher = RpcDispatcher(exchange, handlers)
        channel = await conn.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=SERVE_PREFETCH)
        rpc_queue = await channel.declare_queue(
            self.topology.queue(queue) if queue else self.topology.rpc_queue(exchange),
            auto_delete=True,
        )
        for key in dispatcher.binding_keys():
            await rpc_queue.bind(name, routing_key=key)
        handler = server_handler(dispatcher, channel, self._user_id)
        consumer = self._consumer(channel, rpc_queue, handler, ordered=False)
        await consumer.start()
        return consumer
