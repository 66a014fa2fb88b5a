"""One AMQP consumer: a channel of its own, manual ack, the shared settle rules.

Every consumer gets its own channel so that its prefetch is its own (RabbitMQ
applies ``basic.qos`` per channel) and so that a robust reconnect restores it
with that prefetch. aio-pika runs each delivery in its own task; a subscriber
wants its events in order, so ordered consumers take a FIFO lock, which asyncio
grants in arrival order. Acks go through an :class:`~hwfleet.bus.amqp_acks.AckBatcher`,
which folds the acks of handlers that finish together into one frame.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel

from hwfleet.bus.amqp_acks import LOST, AckBatcher
from hwfleet.bus.base import Delivery, Handler, Subscription
from hwfleet.bus.codec import STOP_GRACE, Outcome, settle

log = logging.getLogger(__name__)

#: ``(message, reason, origin)`` → publish to the dead-letter exchange (confirmed).
DeadLetter = Callable[[AbstractIncomingMessage, str, str], Awaitable[None]]


def to_delivery(message: AbstractIncomingMessage) -> Delivery:
    return Delivery(
        exchange=message.exchange or "",
        routing_key=message.routing_key or "",
        body=message.body,
        headers=message.headers or {},
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        user_id=message.user_id,
        redelivered=bool(message.redelivered),
    )


class AmqpConsumer(Subscription):
    """A consumer on one queue; :meth:`cancel` stops it and waits for running handlers."""

    def __init__(
        self,
        channel: AbstractRobustChannel,
        queue: AbstractQueue,
        handler: Handler,
        dead_letter: DeadLetter,
        *,
        ordered: bool,
        on_cancel: Callable[[AmqpConsumer], None],
    ) -> None:
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

    async def start(self) -> None:
        self._tag = await self.queue.consume(self.on_message)

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        # First, before any await: the batcher must see deliveries in the broker's order,
        # including those never settled here (a multiple ack must not cover them).
        self._acks.delivered(message.channel, message.delivery_tag)
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

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        delivery = to_delivery(message)
        error: Exception | None = None
        try:
            await self._handler(delivery)
        except Exception as exc:
            error = exc
        outcome, reason = settle(error, delivery.redelivered)
        try:
            if outcome is Outcome.ACK:
                self._acks.ack(message.channel, message.delivery_tag)
            elif outcome is Outcome.REQUEUE:
                log.warning("handler on %s failed, requeueing once: %s", self.queue.name, reason)
                self._acks.forget(message.channel, message.delivery_tag)
                await message.nack(requeue=True)
            else:
                await self._dead_letter(message, reason, self.queue.name)
                self._acks.ack(message.channel, message.delivery_tag)
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
