"""One AMQP consumer: a channel of its own, manual ack, the shared settle rules.

Every consumer gets its own channel so that its prefetch is its own (RabbitMQ
applies ``basic.qos`` per channel) and so that a robust reconnect restores it
with that prefetch. Deliveries are taken on the aiormq channel under the robust
one (``basic.consume`` with a plain callback), not through aio-pika's
``Queue.consume``: aio-pika wraps every delivery in an ``IncomingMessage`` (two
dozen guarded attribute sets) and a second task, which on a scan of thousands of
replies cost more CPU than the reply's own handling. aio-pika still declares
and restores the queue; after a reconnect (the robust channel's reopen) this module
consumes again under the same consumer tag. A consumer the broker cancels because its
queue was deleted under it (``basic.cancel`` from the broker) declares the queue and its
bindings again and consumes again, a bounded number of times (aio-pika's own
``Queue.consume`` did not restore that case either).

aiormq runs each delivery in its own task; a subscriber wants its events in
order, so ordered consumers take a FIFO lock, which asyncio grants in arrival
order. Acks go through an :class:`~hwfleet.bus.amqp_acks.AckBatcher`, which folds
the acks of handlers that finish together into one frame.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import cast

import aiormq.abc
from aio_pika.abc import AbstractRobustChannel, AbstractRobustQueue
from pamqp import commands as spec

from hwfleet.bus.amqp_acks import LOST, AckBatcher
from hwfleet.bus.base import Delivery, Handler, Subscription
from hwfleet.bus.codec import STOP_GRACE, Outcome, settle

log = logging.getLogger(__name__)

#: Attempts to declare and consume again after the broker cancelled the consumer, with
#: backoff from RESTORE_FIRST_DELAY doubling to at most 10 s between them (about a minute).
RESTORE_ATTEMPTS = 8
RESTORE_FIRST_DELAY = 0.5

#: ``(message, reason, origin)`` → publish to the dead-letter exchange (confirmed).
DeadLetter = Callable[[aiormq.abc.DeliveredMessage, str, str], Awaitable[None]]


def deliver_frame(message: aiormq.abc.DeliveredMessage) -> spec.Basic.Deliver:
    """The ``basic.deliver`` of a consumed message (aiormq types it as any content frame)."""
    return cast(spec.Basic.Deliver, message.delivery)


def to_delivery(message: aiormq.abc.DeliveredMessage) -> Delivery:
    frame = deliver_frame(message)
    props = message.header.properties
    return Delivery(
        exchange=frame.exchange or "",
        routing_key=frame.routing_key or "",
        body=message.body,
        headers=props.headers or {},
        correlation_id=props.correlation_id,
        reply_to=props.reply_to,
        user_id=props.user_id,
        redelivered=bool(frame.redelivered),
    )


class AmqpConsumer(Subscription):
    """A consumer on one queue; :meth:`cancel` stops it and waits for running handlers."""

    def __init__(
        self,
        channel: AbstractRobustChannel,
        queue: AbstractRobustQueue,
        handler: Handler,
        dead_letter: DeadLetter,
        *,
        ordered: bool,
        on_cancel: Callable[[AmqpConsumer], None],
        restore: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """``restore`` declares the queue and its bindings again after the broker
        cancelled the consumer (default: the robust queue's own declaration and bindings)."""
        self.channel = channel
        self.queue = queue
        self._handler = handler
        self._dead_letter = dead_letter
        self._lock = asyncio.Lock() if ordered else None
        self._running: set[asyncio.Task[object]] = set()
        self._tag: str | None = None
        self._on_cancel = on_cancel
        self._cancelled = False
        self._close_when_idle = False
        self._acks = AckBatcher(queue.name)
        self._restore = restore or queue.restore
        self._restoring: asyncio.Task[None] | None = None
        #: Times the consumer was restored after the broker cancelled it (tests, logs).
        self.restored = 0

    async def start(self) -> None:
        # A tag of our own, kept across reconnects, so that a restored consumer is this one.
        self._tag = f"hwfleet.{uuid.uuid4().hex}"
        await self._consume()
        self.channel.reopen_callbacks.add(self._on_reopen)

    async def _consume(self) -> None:
        assert self._tag is not None
        raw = await self.channel.get_underlay_channel()
        raw.on_consumer_cancel_callbacks.add(self._on_broker_cancel)
        await raw.basic_consume(self.queue.name, self.on_message, consumer_tag=self._tag)

    def _on_broker_cancel(self, frame: spec.Basic.Cancel) -> None:
        # Called from the channel's frame reader: an RPC awaited here would wait for a
        # reply that this very reader has to deliver, so the restore runs as its own task.
        if frame.consumer_tag != self._tag or self._cancelled or self._restoring is not None:
            return
        self._restoring = asyncio.get_running_loop().create_task(self._restore_consumer())

    async def _restore_consumer(self) -> None:
        delay, failure = RESTORE_FIRST_DELAY, "the channel closed"
        try:
            for _ in range(RESTORE_ATTEMPTS):
                if self._cancelled or self.channel.is_closed:
                    return
                try:
                    await self._restore()
                    await self._consume()
                except (*LOST, TimeoutError) as exc:
                    failure = f"{type(exc).__name__}: {exc}"
                else:
                    self.restored += 1
                    log.warning(
                        "queue %s was deleted under its consumer: declared it again and "
                        "consuming (messages sent to it meanwhile were not kept)",
                        self.queue.name,
                    )
                    return
                await asyncio.sleep(delay)  # backoff: the broker or an operator is busy
                delay = min(delay * 2, 10.0)
            log.error(
                "queue %s was deleted under its consumer and could not be declared again "
                "(%s); restart the process once the broker accepts it",
                self.queue.name,
                failure,
            )
        finally:
            self._restoring = None

    async def _on_reopen(self, *_: object) -> None:
        # The robust channel re-declared the queue on a new aiormq channel: consume there.
        if self._cancelled or self.channel.is_closed:
            return
        try:
            await self._consume()
        except (*LOST, TimeoutError) as exc:
            # The new channel is lost too: the next reconnect's reopen consumes again.
            log.warning("consuming %s again after a reconnect failed: %s", self.queue.name, exc)

    async def on_message(self, message: aiormq.abc.DeliveredMessage) -> None:
        # First, before any await: the batcher must see deliveries in the broker's order,
        # including those never settled here (a multiple ack must not cover them).
        tag = deliver_frame(message).delivery_tag
        self._acks.delivered(message.channel, tag)
        if self._cancelled:
            return  # the channel closes shortly and the broker requeues it
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            if self._lock is None:
                await self._handle(message)
            else:
                async with self._lock:
                    await self._handle(message)
        finally:
            if task is not None:
                self._running.discard(task)
            if self._cancelled and self._close_when_idle and not self._running:
                await self._acks.drain()
                await self._close_channel()

    async def _handle(self, message: aiormq.abc.DeliveredMessage) -> None:
        delivery = to_delivery(message)
        channel, tag = message.channel, deliver_frame(message).delivery_tag
        error: Exception | None = None
        try:
            await self._handler(delivery)
        except Exception as exc:
            error = exc
        outcome, reason = settle(error, delivery.redelivered)
        try:
            if outcome is Outcome.ACK:
                self._acks.ack(channel, tag)
            elif outcome is Outcome.REQUEUE:
                log.warning("handler on %s failed, requeueing once: %s", self.queue.name, reason)
                self._acks.forget(channel, tag)
                await channel.basic_nack(tag or 0, requeue=True)
            else:
                await self._dead_letter(message, reason, self.queue.name)
                self._acks.ack(channel, tag)
        except LOST as exc:
            log.info(
                "could not settle a message on %s (%s); it will be redelivered",
                self.queue.name,
                exc,
            )

    async def cancel(self) -> None:
        await self.stop()

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Cancel the consumer; running handlers get ``grace`` seconds to settle."""
        if self._cancelled:
            return
        self._cancelled = True
        self._on_cancel(self)
        if self._restoring is not None and self._restoring is not asyncio.current_task():
            self._restoring.cancel()
        self.channel.reopen_callbacks.discard(self._on_reopen)
        try:
            # With the connection down a robust channel would wait for the broker to come
            # back; the broker forgot the consumer with the connection anyway.
            if self._tag is not None and not self.channel.is_closed:
                async with asyncio.timeout(grace):
                    await self.queue.cancel(self._tag)
        except (*LOST, TimeoutError) as exc:
            log.debug("cancelling the consumer on %s: %r", self.queue.name, exc)
        current = asyncio.current_task()
        # A handler may cancel its own subscription: never wait for ourselves.
        others = [t for t in self._running if t is not current]
        if others:
            _, stuck = await asyncio.wait(others, timeout=grace)
            for task in stuck:  # unsettled: the broker requeues them when the channel closes
                task.cancel()
            if stuck:
                log.warning(
                    "%d handler(s) on %s cancelled after %g s", len(stuck), self.queue.name, grace
                )
                await asyncio.gather(*stuck, return_exceptions=True)
        if current in self._running:
            # Closing now would lose this handler's ack; close once it has settled.
            self._close_when_idle = True
        else:
            await self._acks.drain()
            await self._close_channel()

    async def _close_channel(self) -> None:
        try:
            async with asyncio.timeout(STOP_GRACE):
                await self.channel.close()
        except (*LOST, TimeoutError) as exc:
            log.debug("closing the channel of %s: %s", self.queue.name, exc)
