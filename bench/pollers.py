"""Poller throughput: N simulated Redfish BMCs polled every INTERVAL s by one controller worker.

Prints the controller's CPU per poll (this process: event loop, store, the Redfish poll
client; the simulated BMCs run in another process and are not counted) and the lateness
of polls against their schedule (goal: <= 1 ms CPU per Redfish poll, 99% within 1 s).

    python bench/pollers.py [--bmcs 500] [--interval 15] [--seconds 60] [--profile]
                            [--loop uvloop|asyncio]

The controller runs on uvloop when the ``fast`` extra is installed (``hwfleet server``,
:func:`hwfleet.cli.common.run`), so the benchmark does too unless ``--loop asyncio``.

``cpu_ms_per_poll`` counts everything from the worker's start (the first round's TCP
connects and path discovery included); ``cpu_ms_per_poll_steady`` only what follows the
first round, when every BMC has a warm connection. ``--profile`` prints where the
controller's CPU went (cProfile, top functions by own time) to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib.util
import json
import pstats
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hwfleet.cli import common
from hwfleet.oob.driver import BmcAddress
from hwfleet.oob.service import OobService
from hwfleet.oob.vault import Vault
from hwfleet.oob.worker import PollerWorker
from hwfleet.store import open_store
from hwfleet.store.pollers import PollerRepository

# A minimal Redfish service answering on N loopback addresses (127.3.x.y), one per BMC:
# sushy resolves every path against the host, so each BMC needs an address of its own.
SERVER = r"""
import asyncio, json, sys

BODIES = {
    "/redfish/v1": {"@odata.id": "/redfish/v1/", "Id": "RootService", "RedfishVersion": "1.6.0",
                    "Systems": {"@odata.id": "/redfish/v1/Systems"}},
    "/redfish/v1/Systems": {"Members": [{"@odata.id": "/redfish/v1/Systems/1"}],
                            "Members@odata.count": 1},
    "/redfish/v1/Systems/1": {"@odata.id": "/redfish/v1/Systems/1", "Id": "1",
                              "PowerState": "On", "Status": {"Health": "OK"}},
}
ENCODED = {k: json.dumps(v).encode() for k, v in BODIES.items()}

async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode().split("?")[0].rstrip("/")
            body = ENCODED.get(path)
            if body is None:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()

async def main(n, port):
    servers = [await asyncio.start_server(handle, f"127.3.{i // 250}.{i % 250 + 1}", port)
               for i in range(n)]
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


async def run(bmcs: int, interval: float, seconds: float, profile: bool = False) -> None:
    port = free_port()
    # Started before the measured period; blocking here costs the benchmark nothing.
    server = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-c", SERVER, str(bmcs), str(port)], stdout=subprocess.PIPE
    )
    assert server.stdout is not None
    if server.stdout.readline().strip() != b"ready":
        raise SystemExit("the simulated BMCs did not start")
    with tempfile.TemporaryDirectory() as tmp:
        store = await open_store(f"sqlite+aiosqlite:///{Path(tmp) / 'hwfleet.db'}")
        oob = OobService(store, Vault.open(tmp), timeout=10.0, workers=32)
        try:
            for i in range(bmcs):
                address = BmcAddress(
                    driver="redfish",
                    address=f"http://127.3.{i // 250}.{i % 250 + 1}:{port}",
                    username="admin",
                    password="bench",  # noqa: S106  (the simulated BMCs check none)
                )
                await oob.set_bmc(f"node-{i}", address)
            async with store.tx() as tx:
                repo = PollerRepository(tx.conn)
                for p in await repo.list():
                    if p.type != "chassis":
                        await repo.update(p.id, paused=True)
                    else:
                        await repo.update(p.id, interval=interval)
            worker = PollerWorker(oob, worker="bench", lease=120, tick=1.0, slots=32)
            worker.keep_stats = True
            profiler = cProfile.Profile(time.process_time) if profile else None
            if profiler is not None:
                profiler.enable()
            cpu0, wall0 = time.process_time(), time.monotonic()
            worker.start()
            steady_from: tuple[float, float, int] | None = None
            end = wall0 + seconds
            while time.monotonic() < end:  # the measured period
                await asyncio.sleep(min(0.5, max(0.0, end - time.monotonic())))
                if steady_from is None and len(worker.stats) >= bmcs:
                    steady_from = (time.process_time(), time.monotonic(), len(worker.stats))
            await worker.close()
            cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
            steady_cpu = steady_polls = 0.0
            if steady_from is not None:
                steady_cpu = time.process_time() - steady_from[0]
                steady_polls = len(worker.stats) - steady_from[2]
            if profiler is not None:
                profiler.disable()
                pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(30)
            async with store.tx(readonly=True) as tx:
                rows = await PollerRepository(tx.conn).list()
            failures = sum(1 for r in rows if r.failures)
            errors = sorted({r.last_error for r in rows if r.last_error})[:3]
        finally:
            await oob.close()
            await store.close()
            server.terminate()
            server.wait(10)
    lateness = list(worker.stats)
    polls = len(lateness)
    # The first round starts all at once (every poller is due at creation): count it apart.
    steady = [late for late in lateness[bmcs:]] if polls > bmcs else []
    figures = {
        "bmcs": bmcs,
        "interval_s": interval,
        "seconds": round(wall, 1),
        "polls": polls,
        "polls_per_s": round(polls / wall, 1),
        "expected_polls_per_s": round(bmcs / interval, 1),
        "cpu_ms_per_poll": round(1000 * cpu / polls, 2) if polls else None,
        "cpu_ms_per_poll_steady": round(1000 * steady_cpu / steady_polls, 2)
        if steady_polls
        else None,
        "controller_cpu_percent": round(100 * cpu / wall, 1),
        "pollers_failing": failures,
        "errors": errors,
        "lateness_all_p50_s": round(percentile(lateness, 50), 3),
        "lateness_all_p99_s": round(percentile(lateness, 99), 3),
        "lateness_p50_s": round(percentile(steady, 50), 3),
        "lateness_p99_s": round(percentile(steady, 99), 3),
        "within_1s_percent": round(100 * sum(1 for x in steady if x <= 1) / len(steady), 1)
        if steady
        else None,
    }
    print(json.dumps(figures, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bmcs", type=int, default=500)
    parser.add_argument("--interval", type=float, default=15.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--profile", action="store_true", help="cProfile the controller side")
    fast = importlib.util.find_spec("uvloop") is not None
    parser.add_argument(
        "--loop", choices=("uvloop", "asyncio"), default="uvloop" if fast else "asyncio"
    )
    args = parser.parse_args()
    print(f"event loop: {args.loop}", file=sys.stderr)
    work = run(args.bmcs, args.interval, args.seconds, args.profile)
    common.run(work, fast=args.loop == "uvloop")


if __name__ == "__main__":
    main()
