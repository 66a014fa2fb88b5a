"""What only the in-process backend needs checking (the shared behaviour is in integration/)."""

from __future__ import annotations

import asyncio

import pytest

from hwfleet.bus import Bus, Delivery, MemoryBus, open_bus
from hwfleet.bus.memory import DEAD_LETTER_MAX
from hwfleet.bus.memory_queue import Message, Queue
from hwfleet.types import JsonObject


def test_open_bus_picks_the_backend() -> None:
    assert isinstance(open_bus("memory://"), MemoryBus)
    assert open_bus("memory://", prefix="x.").topology.exchange("events") == "x.events"  # type: ignore[attr-defined]
    from hwfleet.bus.amqp import AmqpBus

    amqp = open_bus("amqps://u:p@broker.example:5671/fleet", connect_timeout=3)
    assert isinstance(amqp, AmqpBus)
    with pytest.raises(ValueError, match="no scheme"):
        open_bus("localhost:5672")
    with pytest.raises(ValueError, match="'kafka' is not supported"):
        open_bus("kafka://x")


async def test_use_before_start_says_so() -> None:
    bus = MemoryBus()
    with pytest.raises(RuntimeError, match=r"await bus\.start"):
        await bus.publish("events", "x", {})


async def test_a_handler_may_cancel_its_own_subscription() -> None:
    async with MemoryBus() as bus:
        got: list[str] = []
        done = asyncio.Event()

        async def once(d: Delivery) -> None:
            got.append(d.routing_key)
            await sub.cancel()
            done.set()

        sub = await bus.subscribe("events", "#", once)
        await bus.publish("events", "a", {})
        await bus.publish("events", "b", {})
        await asyncio.wait_for(done.wait(), 5)
        assert got == ["a"]


async def test_cancelled_consumer_gives_back_unstarted_messages() -> None:
    async with MemoryBus() as bus:
        release = asyncio.Event()
        first: list[int] = []
        second: list[int] = []
        started = asyncio.Event()

        async def slow(d: Delivery) -> None:
            first.append(int(d.body))
            started.set()
            await asyncio.wait_for(release.wait(), 5)

        sub = await bus.consume("q", slow, prefetch=1)
        for n in range(3):
            await bus.send("q", str(n).encode())
        await asyncio.wait_for(started.wait(), 5)
        cancelling = asyncio.create_task(sub.cancel())
        release.set()
        await cancelling  # waited for the running handler
        all_in = asyncio.Event()

        async def rest(d: Delivery) -> None:
            second.append(int(d.body))
            if len(second) == 2:
                all_in.set()

        await bus.consume("q", rest)
        await asyncio.wait_for(all_in.wait(), 5)
        assert first == [0] and second == [1, 2]


async def test_expired_request_is_never_run() -> None:
    async with MemoryBus() as bus:
        ran: list[JsonObject] = []
        gate = asyncio.Event()

        async def get(params: JsonObject) -> JsonObject:
            ran.append(params)
            await asyncio.wait_for(gate.wait(), 5)
            return {}

        sub = await bus.serve("configuration", {"get": get})
        # Fill the server, then queue a call whose caller gives up before the server is free.
        busy = [asyncio.create_task(bus.call("configuration", "get", {"n": i})) for i in range(32)]
        await asyncio.sleep(0)
        with pytest.raises(TimeoutError):
            await bus.call("configuration", "get", {"n": "late"}, timeout=0.05)
        gate.set()
        await asyncio.gather(*busy)
        assert {"n": "late"} not in ran and len(ran) == 32
        await sub.cancel()


async def test_dead_letter_queue_is_bounded_drop_head() -> None:
    async with MemoryBus() as bus:
        dlq = bus._queues[bus.topology.dead_letter_queue]
        assert dlq.max_length == DEAD_LETTER_MAX
        bounded = Queue("q", max_length=3)
        for n in range(5):
            bounded.put(Message("", "q", str(n).encode(), {}))
        assert [m.body for m in bounded.messages] == [b"2", b"3", b"4"]


async def test_close_fails_pending_calls() -> None:
    bus: Bus = MemoryBus()
    await bus.start()
    never = asyncio.Event()

    async def stuck(params: JsonObject) -> JsonObject:
        await never.wait()
        return {}

    await bus.serve("configuration", {"get": stuck})
    call = asyncio.create_task(bus.call("configuration", "get", {}, timeout=30))
    await asyncio.sleep(0.01)
    closing = asyncio.create_task(bus.close())
    with pytest.raises(ConnectionError, match="closed"):
        await call
    never.set()
    await closing
