"""The bus interface: one abstract API, with ``memory://`` and ``amqp://`` beside it.

Semantics every backend keeps (the behaviour suite in tests/ checks them):

* :meth:`Bus.publish` to a topic or fanout exchange; every :meth:`Bus.subscribe`
  gets its own copy of each matching message (AMQP patterns: ``*`` one word,
  ``#`` zero or more words).
* :meth:`Bus.send` to a durable work queue on the default exchange;
  :meth:`Bus.consume` shares a queue between competing consumers with manual
  ack and a prefetch. A handler that returns acks; one that raises
  :class:`RejectedMessageError` dead-letters the message with the reason; any other
  exception requeues it once and then dead-letters it (never a loop).
* :meth:`Bus.call` / :meth:`Bus.serve`: RPC on an exchange with routing key
  ``methods.<method>``, JSON object in, JSON object out, a deadline on every
  call, replies through direct reply-to (never a queue per request).

Exchange names given here are *logical* (``events``, ``configuration``, …);
the backend maps them through :mod:`hwfleet.bus.topology`, which adds the
configurable prefix except for the names seed 000 fixes.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from hwfleet.errors import BusError
from hwfleet.types import JsonObject


@dataclass(frozen=True, slots=True)
class Delivery:
    """A received message."""

    exchange: str
    routing_key: str
    body: bytes
    headers: Mapping[str, Any] = field(default_factory=dict)
    correlation_id: str | None = None
    reply_to: str | None = None
    #: The broker-validated sender (AMQP ``user_id``), when the backend knows it.
    user_id: str | None = None
    redelivered: bool = False


Handler = Callable[[Delivery], Awaitable[None]]
RpcHandler = Callable[[JsonObject], Awaitable[JsonObject]]


class RejectedMessageError(BusError):
    """Raised by a consumer: the message is bad and goes to the dead-letter exchange."""


class RpcError(BusError):
    """An RPC failed: the server answered with an error, or the deadline passed."""

    def __init__(self, exchange: str, method: str, msg: str, code: str = "failed") -> None:
        super().__init__(f"{exchange} {method}: {msg}")
        self.exchange = exchange
        self.method = method
        self.msg = msg
        self.code = code


class RpcTimeoutError(RpcError, TimeoutError):
    """No reply before the deadline."""


class Subscription(abc.ABC):
    """A live subscription, consumer or RPC server; cancel it to stop."""

    @abc.abstractmethod
    async def cancel(self) -> None: ...


class Bus(abc.ABC):
    """The message bus (DESIGN §4)."""

    url: str

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect and declare the topology; waits for the broker rather than failing."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abc.abstractmethod
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
        """Publish to a topic or fanout exchange (a dict body is encoded as JSON).

        ``confirm=False`` is for notifications whose record lives elsewhere (events):
        the call returns once the message is written, without the broker's confirm, and
        raises :class:`BusUnavailableError` at once instead of waiting for a reconnect. A
        connection lost meanwhile may lose the message.
        """

    async def notify_many(
        self, exchange: str, messages: Sequence[tuple[str, bytes | JsonObject]]
    ) -> None:
        """Publish ``(routing_key, body)`` pairs in order, as ``publish(confirm=False)`` does.

        For notifications in bulk (a scan's per-device events): a backend may write them
        together, which costs far less than one publish each. Raises as ``publish`` does;
        a connection lost meanwhile may lose some of them.
        """
        for routing_key, body in messages:
            await self.publish(exchange, routing_key, body, confirm=False)

    @abc.abstractmethod
    async def subscribe(
        self, exchange: str, pattern: str, handler: Handler, *, queue: str | None = None
    ) -> Subscription:
        """Get a private copy of every message on ``exchange`` matching ``pattern``.

        The private queue is exclusive and auto-delete; ``queue`` gives it a fixed
        logical name (a device with its own credentials may declare only its own
        queues), otherwise the bus picks a unique one.
        """

    @abc.abstractmethod
    async def send(
        self,
        queue: str,
        body: bytes | JsonObject,
        *,
        persistent: bool = True,
        headers: Mapping[str, Any] | None = None,
    ) -> None:
        """Put a message on a durable work queue (declared if needed)."""

    @abc.abstractmethod
    async def bind(self, queue: str, exchange: str, pattern: str) -> None:
        """Route messages on ``exchange`` matching ``pattern`` to the durable work queue."""

    @abc.abstractmethod
    async def consume(self, queue: str, handler: Handler, *, prefetch: int = 64) -> Subscription:
        """Take messages from a durable work queue, competing with other consumers."""

    @abc.abstractmethod
    async def call(
        self, exchange: str, method: str, params: JsonObject, *, timeout: float = 5.0
    ) -> JsonObject:
        """Call ``methods.<method>`` on ``exchange``; raise RpcError or RpcTimeoutError."""

    @abc.abstractmethod
    async def serve(self, exchange: str, handlers: Mapping[str, RpcHandler]) -> Subscription:
        """Answer ``methods.<name>`` calls on ``exchange``; competing servers share the load."""
