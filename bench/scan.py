"""Burn-in scan benchmark: N simulated devices over RabbitMQ against mes-sim, vs a bare floor.

For each N (default 1,000 and 10,000) it measures, in the same run:

* **floor** — a bare aio-pika program: one fanout publish on ``devicescan`` to
  N exclusive device queues, N persistent replies on a durable ``hwinfo_queue``,
  consumed with manual ack; no application logic.
* **hwfleet** — the real path: ``ScanService`` on the AMQP bus with the SQLite
  store, a MES lookup per device against ``hwfleet mes-sim`` (its own process),
  compare, batched result writes, events, finishing and the outbox rows. "scan"
  is start → finished (every device answered); "posts" adds the delivery of the
  deviceScan / Pair / notification posts.

Beside the rates it prints CPU per device: the controller's (this process's
``time.process_time`` from start to ``scan.finished``, its aiosqlite threads
included; devices and mes-sim are other processes) and the floor consumer's.

hwfleet runs on uvloop, as ``hwfleet server`` does when the ``fast`` extra is
installed. The floor is measured twice, as a bare aio-pika program runs (the
default asyncio loop) and on uvloop, and the ratio to each is printed: the
issue's reference floor is the former, the latter is the stricter comparison.
Every process shares this machine's cores (RabbitMQ, mes-sim, the device
simulator), which bounds what any controller can reach.

The simulated devices are the same in both: one child process holding N
exclusive queues bound to ``devicescan`` that answer with a persistent reply
(publisher confirms on). Each measurement runs in a fresh vhost, deleted after.

    .venv/bin/python bench/scan.py [--sizes 1000,10000] [--amqp amqp://guest:guest@127.0.0.1/]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
from _rabbit import temporary_vhost

T = TypeVar("T")
HWINFO = "hwinfo_queue"
DEVICESCAN = "devicescan"


def device(i: int) -> dict[str, Any]:
    sn: Any = 100000 + i if i % 2 == 0 else f"SN{100000 + i}"
    return {
        "sn": sn,
        "uuid": f"00000000-0000-4000-8000-{i:012d}",
        "interfaces": [
            {
                "name": "enp4s0",
                "mac": f"02:00:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
            },
            {
                "name": "enp5s0",
                "mac": f"06:00:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
            },
        ],
        "pci": [
            {"address": "0000:04:00.0", "vendor": "0x8086", "device": "0x1533", "class": "0x020000"}
        ],
    }


# -- the simulated devices (child process) ----------------------------------------------------


async def run_devices(url: str, n: int) -> None:
    """Bind N exclusive queues to devicescan; answer each scan with a persistent reply."""
    conn = await aio_pika.connect(url)
    channel = await conn.channel(publisher_confirms=True)
    exchange = await channel.declare_exchange(
        DEVICESCAN, aio_pika.ExchangeType.FANOUT, durable=False
    )
    bodies = []
    for i in range(n):
        d = device(i)
        bodies.append(
            {
                "sn": d["sn"],
                "uuid": d["uuid"],
                "macinfo": [{"interface": x["name"], "macaddr": x["mac"]} for x in d["interfaces"]],
                "pci": d["pci"],
            }
        )

    def answer(body: dict[str, Any]) -> Any:
        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            command = json.loads(message.body)
            reply = json.dumps({"operationid": command["operationid"], **body}).encode()
            await channel.default_exchange.publish(
                aio_pika.Message(reply, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=HWINFO,
            )

        return on_message

    async def bind(body: dict[str, Any]) -> None:
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange)
        await queue.consume(answer(body), no_ack=True)

    for start in range(0, n, 500):
        await asyncio.gather(*(bind(b) for b in bodies[start : start + 500]))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until parent closes
    await conn.close()


@asynccontextmanager
async def devices(url: str, n: int) -> AsyncIterator[None]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--child-devices",
        "--amqp",
        url,
        "--n",
        str(n),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        async with asyncio.timeout(300):
            line = await proc.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"device simulator failed to start: {line!r}")
        yield
    finally:
        proc.stdin.close()
        try:
            async with asyncio.timeout(30):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


# -- vhosts and mes-sim -----------------------------------------------------------------------


@asynccontextmanager
async def vhost(base_url: str) -> AsyncIterator[str]:
    # rabbitmqctl blocks for a second or two: keep it off the event loop.
    manager = temporary_vhost(base_url, "hwfleet-bench")
    url = await asyncio.to_thread(manager.__enter__)
    try:
        if url is None:
            raise SystemExit("rabbitmqctl not found: the benchmark needs a local RabbitMQ")
        yield url
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)


@contextmanager
def mes_sim(profile: Path) -> Iterator[str]:
    """``hwfleet mes-sim`` in its own process, for every measurement of the run."""
    from hwfleet.sim.mes import bind_socket

    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    command = [sys.executable, "-m", "hwfleet.cli", "mes-sim", "--listen", f"127.0.0.1:{port}"]
    command += ["--profile", str(profile), "--log-level", "warning"]
    with subprocess.Popen(command, stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        try:
            line = proc.stdout.readline()  # it prints "listening …" once it accepts
            if b"listening" not in line:
                raise RuntimeError(f"mes-sim failed to start: {line!r}")
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()


# -- the two measurements ---------------------------------------------------------------------


async def floor(url: str, n: int) -> tuple[float, float]:
    """Seconds from trigger to the last reply acked, and this process's CPU seconds meanwhile."""
    conn = await aio_pika.connect(url)
    channel = await conn.channel(publisher_confirms=True)
    await channel.set_qos(prefetch_count=256)
    exchange = await channel.declare_exchange(
        DEVICESCAN, aio_pika.ExchangeType.FANOUT, durable=False
    )
    queue = await channel.declare_queue(HWINFO, durable=True)
    done = asyncio.Event()
    count = 0

    async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal count
        await message.ack()
        count += 1
        if count == n:
            done.set()

    await queue.consume(on_reply)
    async with devices(url, n):
        started, cpu = time.perf_counter(), time.process_time()
        await exchange.publish(
            aio_pika.Message(json.dumps({"operationid": 1, "action": 1}).encode()), ""
        )
        async with asyncio.timeout(600):
            await done.wait()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await conn.close()
    return elapsed, cpu


async def hwfleet_scan(
    url: str, n: int, mes_base: str, data: Path
) -> tuple[float, float, int, float]:
    """Seconds to finish and to deliver the posts, devices passed, controller CPU seconds.

    The controller is this process (its threads included: aiosqlite's); the devices and
    mes-sim are other processes, so ``time.process_time`` is the controller's CPU alone.
    """
    from hwfleet.bus import Delivery, open_bus
    from hwfleet.controller.outbox import OutboxWorker
    from hwfleet.controller.scan import ScanService
    from hwfleet.integrations.mes import MesClient
    from hwfleet.settings import ServerSettings
    from hwfleet.store import open_store

    settings = ServerSettings(
        mes=mes_base,
        bus=url,
        data_dir=str(data),
        scan_quiet_timeout=30.0,
    )
    store = await open_store(settings.db_url())
    bus = open_bus(url)
    await bus.start()
    mes = MesClient(settings.mes_urls())
    outbox = OutboxWorker(store, mes)
    scans = ScanService(store, bus, mes, settings, outbox=outbox)
    finished: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def on_finished(delivery: Delivery) -> None:
        if not finished.done():
            finished.set_result(json.loads(delivery.body)["data"])

    await bus.subscribe("events", "scan.finished.#", on_finished)
    await outbox.start()
    await scans.serve()
    try:
        async with devices(url, n):
            expected = [{"uuid": device(i)["uuid"], "sn": device(i)["sn"]} for i in range(n)]
            started, cpu = time.perf_counter(), time.process_time()
            await scans.start(expected)
            async with asyncio.timeout(600):
                result = await finished
            scanned, cpu = time.perf_counter() - started, time.process_time() - cpu
            async with asyncio.timeout(120):
                while True:
                    async with store.tx(readonly=True) as tx:
                        if await tx.outbox.pending_count() == 0:
                            break
                    await asyncio.sleep(0.01)
            posted = time.perf_counter() - started
    finally:
        await scans.close()
        await outbox.close()
        await mes.aclose()
        await bus.close()
        await store.close()
    return scanned, posted, int(result["passed"]), cpu


def on_loop(loop: str, main: Coroutine[Any, Any, T]) -> T:
    """Run one measurement in a fresh event loop of the kind named."""
    from hwfleet.cli.common import run

    return run(main, fast=loop == "uvloop")


async def floor_in_vhost(base_url: str, n: int) -> tuple[float, float]:
    async with vhost(base_url) as url:
        return await floor(url, n)


async def hwfleet_in_vhost(
    base_url: str, n: int, mes_base: str, data: Path
) -> tuple[float, float, int, float]:
    async with vhost(base_url) as url:
        return await hwfleet_scan(url, n, mes_base, data)


def main(args: argparse.Namespace) -> None:
    sizes = [int(s) for s in args.sizes.split(",")]
    # hwfleet runs on uvloop as `hwfleet server` does when the `fast` extra is installed;
    # the floor is measured both as a bare aio-pika program runs (asyncio) and on uvloop.
    fast = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    floors = ["asyncio"] + (["uvloop"] if fast == "uvloop" else [])
    rows = []
    with tempfile.TemporaryDirectory(prefix="hwfleet-bench-") as tmp:
        profile = Path(tmp) / "profile.json"
        profile.write_text(json.dumps({"devices": [device(i) for i in range(max(sizes))]}))
        with mes_sim(profile) as mes_base:
            # --repeat interleaves floor and hwfleet rounds: this machine's speed drifts by
            # tens of percent from minute to minute, and each round compares like with like.
            for n in [n for n in sizes for _ in range(args.repeat)]:
                measured = {loop: on_loop(loop, floor_in_vhost(args.amqp, n)) for loop in floors}
                bare = {loop: t for loop, (t, _) in measured.items()}
                bare_cpu = {loop: c for loop, (_, c) in measured.items()}
                data = Path(tmp) / f"data-{n}"
                scanned, posted, passed, cpu = on_loop(
                    fast, hwfleet_in_vhost(args.amqp, n, mes_base, data)
                )
                if passed != n:
                    raise SystemExit(f"only {passed} of {n} devices passed: the benchmark is wrong")
                rows.append((n, bare, scanned, posted, cpu, bare_cpu))
                floor_text = ", ".join(
                    f"{n / t:.0f}/s and {bare_cpu[loop] / n * 1e3:.3f} ms CPU/device on {loop}"
                    for loop, t in bare.items()
                )
                print(
                    f"{n:>6} devices: floor {floor_text} | hwfleet ({fast}) {scanned:.2f} s = "
                    f"{n / scanned:.0f}/s, controller CPU {cpu / n * 1e3:.3f} ms/device, "
                    f"posts delivered at {posted:.2f} s",
                    flush=True,
                )
    print(
        "\nsummary (ratio = hwfleet devices/s ÷ floor devices/s, same run; goal at 10,000: ≥ 50%;"
        "\n controller CPU per device = this process's CPU from start to finished ÷ N,"
        " goal ≤ 0.5 ms;\n the floor's is its consumer's CPU)"
    )
    for n, bare, scanned, posted, cpu, bare_cpu in rows:
        ratios = ", ".join(
            f"{bare[loop] / scanned:.1%} of the {loop} floor ({n / bare[loop]:.0f}/s)"
            for loop in bare
        )
        cpus = ", ".join(
            f"{bare_cpu[loop] / n * 1e3:.3f} ms on the {loop} floor ({cpu / bare_cpu[loop]:.1f}x)"
            for loop in bare_cpu
        )
        print(
            f"  N={n}: hwfleet {n / scanned:.0f}/s = {ratios}; "
            f"all posts delivered at {posted:.2f} s\n"
            f"  N={n}: controller CPU {cpu / n * 1e3:.3f} ms/device against {cpus}"
        )
    if args.repeat > 1:
        print(f"\nmedian over {args.repeat} rounds (ratio per round, then the median)")
        for n in sizes:
            mine = [r for r in rows if r[0] == n]
            for loop in floors:
                ratios = sorted(r[1][loop] / r[2] for r in mine)
                shown = ", ".join(f"{x:.0%}" for x in ratios)
                print(f"  N={n}: {statistics.median(ratios):.1%} of the {loop} floor ({shown})")
            per_device = sorted(r[4] / n * 1e3 for r in mine)
            shown = ", ".join(f"{x:.3f}" for x in per_device)
            print(
                f"  N={n}: controller CPU median {statistics.median(per_device):.3f} ms/device"
                f" ({shown})"
            )


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds per size, floor and hwfleet interleaved"
    )
    parser.add_argument(
        "--amqp", default=os.environ.get("HWFLEET_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
    )
    parser.add_argument("--child-devices", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_devices:
        asyncio.run(run_devices(args.amqp, args.n))
    else:
        main(args)


if __name__ == "__main__":
    cli()
