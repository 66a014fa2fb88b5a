"""The message bus (DESIGN §4): ``memory://`` in-process or ``amqp://`` RabbitMQ.

:func:`open_bus` picks the backend from the URL; both keep the semantics of
:class:`~hwfleet.bus.base.Bus`. The AMQP backend is imported only when asked
for, so the embedded default runs without aio-pika installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hwfleet.bus.base import (
    Bus,
    Delivery,
    Handler,
    RejectedMessageError,
    RpcError,
    RpcHandler,
    RpcTimeoutError,
    Subscription,
)
from hwfleet.bus.codec import decode_object
from hwfleet.bus.memory import MemoryBus
from hwfleet.bus.routing import topic_matches
from hwfleet.bus.topology import (
    DEAD_LETTER,
    DEFAULT_PREFIX,
    DEVICESCAN,
    HWINFO_QUEUE,
    LOG_LEVELS,
    ORIGIN_HEADER,
    REASON_HEADER,
    EventKey,
    Topology,
    UnknownNameError,
    level_for,
    log_key,
)

if TYPE_CHECKING:
    from hwfleet.bus.amqp import AmqpBus
    from hwfleet.bus.amqp_connect import BusUnavailableError

__all__ = [
    "DEAD_LETTER",
    "DEFAULT_PREFIX",
    "DEVICESCAN",
    "HWINFO_QUEUE",
    "LOG_LEVELS",
    "ORIGIN_HEADER",
    "REASON_HEADER",
    "AmqpBus",
    "Bus",
    "BusUnavailableError",
    "Delivery",
    "EventKey",
    "Handler",
    "MemoryBus",
    "RejectedMessageError",
    "RpcError",
    "RpcHandler",
    "RpcTimeoutError",
    "Subscription",
    "Topology",
    "UnknownNameError",
    "decode_object",
    "level_for",
    "log_key",
    "open_bus",
    "topic_matches",
]


def __getattr__(name: str) -> object:
    # AmqpBus and BusUnavailableError live with aio-pika; import them only when used.
    if name in ("AmqpBus", "BusUnavailableError"):
        from hwfleet.bus import amqp, amqp_connect

        return amqp.AmqpBus if name == "AmqpBus" else amqp_connect.BusUnavailableError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_bus(
    url: str,
    *,
    prefix: str = DEFAULT_PREFIX,
    connect_timeout: float | None = None,
    hwinfo_quorum: bool = False,
) -> Bus:
    """The bus for ``url`` (not started: ``await bus.start()``).

    ``memory://`` is the in-process broker; ``amqp://`` / ``amqps://`` is RabbitMQ.
    ``connect_timeout`` bounds how long an AMQP start waits for the broker
    (``None``: wait until it answers, logging every attempt). ``hwinfo_quorum``
    declares ``hwinfo_queue`` as a quorum queue (AMQP only; see docs/bus.md).
    """
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError(f"bus URL {url!r} has no scheme (memory:// or amqp://host)")
    if scheme == "memory":
        return MemoryBus(url, prefix=prefix)
    if scheme in ("amqp", "amqps"):
        try:
            from hwfleet.bus.amqp import AmqpBus
        except ImportError as exc:
            raise ValueError(
                f"bus URL {url.split('@')[-1]!r} needs aio-pika: pip install 'hwfleet[amqp]'"
            ) from exc
        return AmqpBus(
            url, prefix=prefix, connect_timeout=connect_timeout, hwinfo_quorum=hwinfo_quorum
        )
    raise ValueError(f"bus URL scheme {scheme!r} is not supported (memory:// or amqp(s)://)")
