"""Queues and consumers of the in-process broker behind ``memory://``.

They model what the AMQP backend relies on in RabbitMQ: a queue hands each
message to one consumer, round-robin over the consumers that have room under
their prefetch; a consumer runs at most ``concurrency`` handlers at once; a
handler failure requeues the message at the head of the queue, marked
redelivered. Workers are created only while there is work, so an idle
subscription costs no task and a busy one does not spawn a task per message.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from hwfleet.bus.base import Delivery, Handler
from hwfleet.bus.codec import STOP_GRACE, Outcome, settle

log = logging.getLogger(__name__)


class Message:
    """One copy of a message in one queue (the redelivered flag is per copy)."""

    __slots__ = (
        "body",
        "correlation_id",
        "exchange",
        "expires_at",
        "headers",
        "redelivered",
        "reply_to",
        "routing_key",
    )

    def __init__(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        headers: Mapping[str, Any],
        correlation_id: str | None = None,
        reply_to: str | None = None,
        expires_at: float | None = None,
    ) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.body = body
        self.headers = headers
        self.correlation_id = correlation_id
        self.reply_to = reply_to
        self.expires_at = expires_at
        self.redelivered = False

    def copy(self) -> Message:
        # Each queue gets its own headers dict so one subscriber cannot alter another's copy.
        return Message(
            self.exchange,
            self.routing_key,
            self.body,
            dict(self.headers) if self.headers else {},
            self.correlation_id,
            self.reply_to,
            self.expires_at,
        )


#: Called with a message whose handler failed for good: ``(message, reason, queue name)``.
DeadLetter = Callable[[Message, str, str], None]


class Queue:
    """A FIFO with competing consumers."""

    def __init__(
        self,
        name: str,
        *,
        auto_delete: bool = False,
        max_length: int | None = None,
        on_empty_consumers: Callable[[Queue], None] | None = None,
    ) -> None:
        self.name = name
        self.auto_delete = auto_delete
        self.max_length = max_length
        self.messages: deque[Message] = deque()
        self.consumers: list[Consumer] = []
        self._next = 0
        self._on_empty = on_empty_consumers
        self._loop = asyncio.get_running_loop()

    def put(self, msg: Message, *, front: bool = False) -> None:
        if front:
            self.messages.appendleft(msg)
        else:
            self.messages.append(msg)
        if self.max_length is not None and len(self.messages) > self.max_length:
            self.messages.popleft()  # drop-head, as RabbitMQ's x-max-length does
        if self.consumers:
            self.dispatch()

    def dispatch(self) -> None:
        """Hand queued messages to consumers with room, round-robin."""
        messages, consumers = self.messages, self.consumers
        while messages and consumers:
            count = len(consumers)
            for step in range(count):
                consumer = consumers[(self._next + step) % count]
                if consumer.assigned < consumer.capacity:
                    break
            else:
                return
            self._next = (self._next + step + 1) % count
            msg = messages.popleft()
            if msg.expires_at is not None and msg.expires_at < self._loop.time():
                continue  # an RPC request whose caller has given up
            consumer.give(msg)

    def add(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)
        self.dispatch()

    def remove(self, consumer: Consumer) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)
        if not self.consumers and self._on_empty is not None:
            self._on_empty(self)


class Consumer:
    """Runs a handler on the messages its queue gives it."""

    def __init__(
        self,
        queue: Queue,
        handler: Handler,
        dead_letter: DeadLetter,
        *,
        capacity: int,
        concurrency: int,
    ) -> None:
        self.queue = queue
        self.handler = handler
        self.capacity = capacity
        self.concurrency = concurrency
        self.assigned = 0
        self.active = True
        self._pending: deque[Message] = deque()
        self._workers: set[asyncio.Task[None]] = set()
        self._dead_letter = dead_letter

    def give(self, msg: Message) -> None:
        self.assigned += 1
        self._pending.append(msg)
        if len(self._workers) < self.concurrency and len(self._workers) < self.assigned:
            task = asyncio.create_task(self._work(), name=f"bus consumer {self.queue.name}")
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)

    async def _work(self) -> None:
        pending = self._pending
        try:
            while pending and self.active:
                msg = pending.popleft()
                try:
                    await self._process(msg)
                finally:
                    self.assigned -= 1
                if self.active:
                    self.queue.dispatch()
        finally:
            # Leave the set in the same step as the last look at ``pending``: a done
            # callback would run too late, and give() would count a finished worker.
            task = asyncio.current_task()
            if task is not None:
                self._workers.discard(task)

    async def _process(self, msg: Message) -> None:
        delivery = Delivery(
            exchange=msg.exchange,
            routing_key=msg.routing_key,
            body=msg.body,
            headers=msg.headers,
            correlation_id=msg.correlation_id,
            reply_to=msg.reply_to,
            redelivered=msg.redelivered,
        )
        error: Exception | None = None
        try:
            await self.handler(delivery)
        except Exception as exc:
            error = exc
        outcome, reason = settle(error, msg.redelivered)
        if outcome is Outcome.ACK:
            return
        if outcome is Outcome.REQUEUE:
            log.warning("handler on %s failed, requeueing once: %s", self.queue.name, reason)
            msg.redelivered = True
            self.queue.put(msg, front=True)
        else:
            self._dead_letter(msg, reason, self.queue.name)

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop taking messages; unstarted ones go back, running handlers get ``grace`` s."""
        self.active = False
        self.queue.remove(self)
        while self._pending:
            msg = self._pending.pop()
            msg.redelivered = True
            self.assigned -= 1
            self.queue.put(msg, front=True)
        current = asyncio.current_task()
        # A handler may cancel its own subscription: never wait for ourselves.
        others = [t for t in self._workers if t is not current]
        if not others:
            return
        _, stuck = await asyncio.wait(others, timeout=grace)
        if stuck:
            log.warning(
                "%d handler(s) on %s still running after %g s; cancelling them",
                len(stuck),
                self.queue.name,
                grace,
            )
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)
