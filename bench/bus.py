"""Bus throughput: events/s published and consumed, RPC calls/s, per backend.

For AMQP the same run also measures a bare aio-pika loop doing the same work
(confirmed publishes of the same size to a topic exchange, a bound queue
consumed with manual acks) and prints hwfleet's rate as a fraction of it; the
goal is at least 70 %. RabbitMQ work happens in a fresh vhost that is deleted
afterwards (or, without rabbitmqctl, under unique names).

    .venv/bin/python bench/bus.py [--amqp URL] [--count 20000] [--size 256]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import aio_pika
from _rabbit import temporary_vhost

from hwfleet.bus import Bus, Delivery, MemoryBus
from hwfleet.bus.amqp import AmqpBus
from hwfleet.types import JsonObject

BATCH = 200  # publishes in flight at once on AMQP (each waits for its confirm)


@dataclass
class Rates:
    published: float
    consumed: float


def _body(size: int) -> bytes:
    return b'{"pad":"' + b"x" * max(size - 10, 0) + b'"}'


async def _batched(count: int, one: Callable[[int], Awaitable[object]], batch: int) -> None:
    if batch <= 1:
        for i in range(count):
            await one(i)
        return
    for start in range(0, count, batch):
        await asyncio.gather(*(one(i) for i in range(start, min(start + batch, count))))


async def hwfleet_events(bus: Bus, count: int, size: int, batch: int) -> Rates:
    body = _body(size)
    done = asyncio.Event()
    seen = 0

    async def handler(d: Delivery) -> None:
        nonlocal seen
        seen += 1
        if seen >= count:
            done.set()

    sub = await bus.subscribe("events", "bench.#", handler)
    t0 = time.perf_counter()
    await _batched(count, lambda i: bus.publish("events", "bench.event", body), batch)
    t1 = time.perf_counter()
    await asyncio.wait_for(done.wait(), 300)
    t2 = time.perf_counter()
    await sub.cancel()
    return Rates(count / (t1 - t0), count / (t2 - t0))


async def hwfleet_rpc(bus: Bus, calls: int, concurrency: int) -> float:
    async def get(params: JsonObject) -> JsonObject:
        return {"key": params["key"], "value": 1}

    sub = await bus.serve("configuration", {"get": get})
    t0 = time.perf_counter()
    await _batched(
        calls, lambda i: bus.call("configuration", "get", {"key": "k"}, timeout=30), concurrency
    )
    rate = calls / (time.perf_counter() - t0)
    await sub.cancel()
    return rate


async def bare_events(url: str, count: int, size: int, batch: int) -> Rates:
    body = _body(size)
    conn = await aio_pika.connect_robust(url)
    try:
        pub = await conn.channel(publisher_confirms=True)
        exchange = await pub.declare_exchange(
            f"bare.{uuid.uuid4().hex[:8]}", aio_pika.ExchangeType.TOPIC, auto_delete=True
        )
        sub = await conn.channel(publisher_confirms=False)
        await sub.set_qos(prefetch_count=256)
        queue = await sub.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange.name, routing_key="bench.#")
        done = asyncio.Event()
        seen = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal seen
            await message.ack()
            seen += 1
            if seen >= count:
                done.set()

        await queue.consume(on_message)
        t0 = time.perf_counter()
        await _batched(
            count,
            lambda i: exchange.publish(aio_pika.Message(body), routing_key="bench.event"),
            batch,
        )
        t1 = time.perf_counter()
        await asyncio.wait_for(done.wait(), 300)
        t2 = time.perf_counter()
        return Rates(count / (t1 - t0), count / (t2 - t0))
    finally:
        await conn.close()


@contextlib.contextmanager
def fresh_vhost(url: str) -> Iterator[str]:
    with temporary_vhost(url, "hwfleet-bench") as fresh:
        yield fresh or url  # no rabbitmqctl: measure in the URL's own vhost


def _line(name: str, value: float, unit: str) -> None:
    print(f"  {name:<34} {value:>12,.0f} {unit}")


async def run_memory(args: argparse.Namespace) -> None:
    print(f"memory://  ({args.count} events of {args.size} B, {args.rpc} RPC calls)")
    async with MemoryBus() as bus:
        ev = await hwfleet_events(bus, args.count, args.size, 1)
        rpc = await hwfleet_rpc(bus, args.rpc, args.concurrency)
    _line("events published", ev.published, "/s")
    _line("events published+consumed", ev.consumed, "/s")
    _line("RPC calls", rpc, "/s")


async def run_amqp(args: argparse.Namespace, url: str) -> None:
    print(f"amqp://  ({args.count} events of {args.size} B, {args.rpc} RPC calls)")
    best_hw = Rates(0, 0)
    best_bare = Rates(0, 0)
    for _ in range(args.rounds):  # alternate, keep each side's best: fair on a busy box
        bare = await bare_events(url, args.count, args.size, BATCH)
        best_bare = Rates(
            max(best_bare.published, bare.published), max(best_bare.consumed, bare.consumed)
        )
        async with AmqpBus(url, prefix=f"bench{uuid.uuid4().hex[:6]}.") as bus:
            hw = await hwfleet_events(bus, args.count, args.size, BATCH)
        best_hw = Rates(max(best_hw.published, hw.published), max(best_hw.consumed, hw.consumed))
    async with AmqpBus(url, prefix=f"bench{uuid.uuid4().hex[:6]}.") as bus:
        rpc = await hwfleet_rpc(bus, args.rpc, args.concurrency)
    _line("bare aio-pika published", best_bare.published, "/s")
    _line("bare aio-pika published+consumed", best_bare.consumed, "/s")
    _line("hwfleet published", best_hw.published, "/s")
    _line("hwfleet published+consumed", best_hw.consumed, "/s")
    _line("hwfleet RPC calls", rpc, "/s")
    pub = best_hw.published / best_bare.published
    con = best_hw.consumed / best_bare.consumed
    print(
        f"  ratio hwfleet / bare aio-pika: publish {pub:.0%}, publish+consume {con:.0%}"
        f" (goal >= 70%)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--amqp",
        default=os.environ.get("HWFLEET_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/"),
    )
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rpc", type=int, default=3_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backends", default="memory,amqp")
    args = parser.parse_args()
    args.count = min(args.count, 1_000_000)
    backends = args.backends.split(",")
    if "memory" in backends:
        asyncio.run(run_memory(args))
    if "amqp" in backends:
        with fresh_vhost(args.amqp) as url:
            asyncio.run(run_amqp(args, url))


if __name__ == "__main__":
    main()
