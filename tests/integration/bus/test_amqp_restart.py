"""A RabbitMQ restart in the middle of a stream: nothing persistent is lost, everyone carries on.

This stops the shared broker for a few seconds (``rabbitmqctl stop_app`` /
``start_app``), so it is marked ``slow`` and kept short.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable

import pytest
from tests.conftest import service_missing

from hwfleet.bus import Delivery, RpcError, decode_object
from hwfleet.bus.amqp import AmqpBus
from hwfleet.types import JsonObject

pytestmark = [pytest.mark.rabbit, pytest.mark.slow]

COUNT = 600
DEADLINE = 90.0


async def _ctl(*args: str) -> None:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        service_missing("rabbitmqctl is not on this machine; cannot restart the broker")
    proc = await asyncio.create_subprocess_exec(
        ctl, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, f"rabbitmqctl {' '.join(args)}: {err.decode()}{out.decode()}"


async def _eventually(attempt: Callable[[], object], what: str) -> None:
    """Retry ``attempt`` (bounded) while the robust channels re-declare after the restart."""
    try:
        await asyncio.wait_for(_retry(attempt), 30)
    except TimeoutError:
        raise AssertionError(f"not within 30 s: {what}") from None


async def _retry(attempt: Callable[[], object]) -> None:
    while True:
        try:
            result = attempt()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
        except RpcError:
            pass  # no server yet: its queue is being declared again
        await asyncio.sleep(0.2)


async def test_broker_restart_mid_stream(amqp_url: str) -> None:
    prefix = "restart."
    producer = AmqpBus(amqp_url, prefix=prefix, reconnect_interval=0.5, publish_timeout=DEADLINE)
    consumer = AmqpBus(amqp_url, prefix=prefix, reconnect_interval=0.5, publish_timeout=DEADLINE)
    await producer.start()
    await consumer.start()
    received: set[int] = set()
    everything = asyncio.Event()
    events: list[str] = []

    after = asyncio.Event()

    async def take(d: Delivery) -> None:
        n = decode_object(d.body)["n"]
        received.add(n)
        if len(received) >= COUNT:
            everything.set()
        if n == COUNT:
            after.set()

    async def watch(d: Delivery) -> None:
        events.append(d.routing_key)

    async def get(params: JsonObject) -> JsonObject:
        return {"key": params["key"], "value": 1}

    mid = asyncio.Event()

    async def stream() -> None:
        for n in range(COUNT):
            await producer.send("stream", {"n": n})
            if n == COUNT // 3:
                mid.set()

    try:
        await consumer.consume("stream", take, prefetch=20)
        await consumer.subscribe("events", "after.#", watch)
        await consumer.serve("configuration", {"get": get})
        sending = asyncio.create_task(stream())
        async with asyncio.timeout(DEADLINE):
            await mid.wait()
            try:
                await _ctl("stop_app")
            finally:  # never leave the shared broker stopped
                await _ctl("start_app")
                await _ctl("await_startup", "--timeout", "60")
            await sending
            await everything.wait()
        assert received == set(range(COUNT))  # at-least-once: duplicates allowed, no loss

        async def event_arrives() -> bool:
            await producer.publish("events", "after.restart", {})
            return bool(events)

        await _eventually(event_arrives, "subscription restored")
        await _eventually(
            lambda: producer.call("configuration", "get", {"key": "k"}, timeout=2),
            "RPC restored",
        )
        assert await producer.call("configuration", "get", {"key": "k"}) == {"key": "k", "value": 1}
        # The stream carries on after the restart too.
        await producer.send("stream", {"n": COUNT})
        await asyncio.wait_for(after.wait(), DEADLINE)
        # The connections really were lost and re-made (not a restart that missed us).
        assert producer.reconnects >= 1 and consumer.reconnects >= 1
    finally:
        await producer.close()
        await consumer.close()
