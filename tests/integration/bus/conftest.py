"""The ``bus`` fixture: every behaviour test runs on ``memory://`` and on RabbitMQ.

In the style of dramatiq's stub/rabbitmq broker fixtures: one parametrised
fixture, the AMQP half marked ``rabbit`` and using the session's fresh vhost.
Each test gets its own exchange prefix, so tests never see each other's
messages. ``peer`` is a second participant: the same object in memory (one
bus is one broker), a second connection on RabbitMQ (another replica).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from hwfleet.bus import Bus, MemoryBus


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture(params=["memory", pytest.param("amqp", marks=pytest.mark.rabbit)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def bus(backend: str, prefix: str, request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    b: Bus
    if backend == "memory":
        b = MemoryBus(prefix=prefix)
    else:
        from hwfleet.bus.amqp import AmqpBus

        b = AmqpBus(request.getfixturevalue("amqp_url"), prefix=prefix, connect_timeout=10)
    await b.start()
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture
async def peer(
    bus: Bus, backend: str, prefix: str, request: pytest.FixtureRequest
) -> AsyncIterator[Bus]:
    if backend == "memory":
        yield bus
        return
    from hwfleet.bus.amqp import AmqpBus

    other = AmqpBus(request.getfixturevalue("amqp_url"), prefix=prefix, connect_timeout=10)
    await other.start()
    try:
        yield other
    finally:
        await other.close()
