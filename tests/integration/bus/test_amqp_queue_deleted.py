"""A queue deleted under its consumer (an operator's ``rabbitmqctl delete_queue``, a policy):
the broker cancels the consumer, and hwfleet declares the queue, its bindings and the
consumer again instead of going deaf until the process restarts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import aio_pika
import pytest

from hwfleet.bus import Delivery, RpcError, decode_object
from hwfleet.bus.amqp import AmqpBus
from hwfleet.bus.amqp_consumer import AmqpConsumer
from hwfleet.types import JsonObject

pytestmark = pytest.mark.rabbit
DEADLINE = 30.0


@pytest.fixture
async def bus(amqp_url: str) -> AsyncIterator[AmqpBus]:
    b = AmqpBus(amqp_url, prefix=f"t{uuid.uuid4().hex[:10]}.", connect_timeout=10)
    await b.start()
    try:
        yield b
    finally:
        await b.close()


async def _delete_queue(amqp_url: str, name: str) -> None:
    """Delete ``name`` from another connection, as an operator's tool would."""
    conn = await aio_pika.connect(amqp_url)
    try:
        channel = await conn.channel()
        await channel.queue_delete(name, if_unused=False, if_empty=False)
    finally:
        await conn.close()


async def _until(attempt: Callable[[], Awaitable[bool]], what: str) -> None:
    """Try ``attempt`` until it succeeds (each try bounded by its own wait), or fail."""
    try:
        async with asyncio.timeout(DEADLINE):
            while not await attempt():
                pass
    except TimeoutError:
        raise AssertionError(f"not within {DEADLINE:g} s: {what}") from None


async def test_deleted_work_queue_is_declared_bound_and_consumed_again(
    bus: AmqpBus, amqp_url: str
) -> None:
    got: asyncio.Queue[int] = asyncio.Queue()

    async def take(d: Delivery) -> None:
        await got.put(decode_object(d.body)["n"])

    await bus.bind("jobs", "events", "job.#")
    sub = await bus.consume("jobs", take)
    assert isinstance(sub, AmqpConsumer)
    await bus.publish("events", "job.before", {"n": -1})
    assert await asyncio.wait_for(got.get(), DEADLINE) == -1

    await _delete_queue(amqp_url, bus.topology.queue("jobs"))
    sent = iter(range(1_000))

    async def routed_and_consumed() -> bool:
        # Published to the exchange, not the queue: only a restored binding routes it.
        n = next(sent)
        await bus.publish("events", "job.after", {"n": n})
        try:
            return await asyncio.wait_for(got.get(), 0.5) == n
        except TimeoutError:
            return False

    await _until(routed_and_consumed, "the deleted work queue consumed again")
    assert sub.restored == 1
    for n in range(2_000, 2_020):  # and it stays consumed, nothing lost from now on
        await bus.publish("events", "job.more", {"n": n})
    async with asyncio.timeout(DEADLINE):
        later = [await got.get() for _ in range(20)]
    assert sorted(n for n in later if n >= 2_000) == list(range(2_000, 2_020))


async def test_deleted_rpc_queue_is_served_again(bus: AmqpBus, amqp_url: str) -> None:
    async def get(params: JsonObject) -> JsonObject:
        return {"key": params["key"], "value": 10.0}

    server = AmqpBus(amqp_url, prefix=bus.topology.prefix, connect_timeout=10)
    await server.start()
    try:
        sub = await server.serve("configuration", {"get": get})
        assert isinstance(sub, AmqpConsumer)
        assert (await bus.call("configuration", "get", {"key": "k"}))["value"] == 10.0
        await _delete_queue(amqp_url, bus.topology.rpc_queue("configuration"))

        async def answered() -> bool:
            try:
                await bus.call("configuration", "get", {"key": "k"}, timeout=0.5)
            except RpcError:
                return False  # no queue yet: refused at once, or not answered in time
            return True

        await _until(answered, "the RPC server's deleted queue served again")
        assert sub.restored == 1
    finally:
        await server.close()
