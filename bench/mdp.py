"""Benchmark: MDP v2 round trips to one endpoint on loopback, and the cost of dropping junk.

Prints the median and p99 round-trip time of authenticated ``load_and_memory`` and
``get_available_methods`` requests (sequential, one at a time), and how many wrong-key
datagrams per second the endpoint drops. Everything stays on loopback.

    .venv/bin/python bench/mdp.py [--requests 500]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import time

from hwfleet.mdp import wire
from hwfleet.mdp.client import call
from hwfleet.mdp.endpoint import MdpEndpoint
from hwfleet.mdp.operations import load_operations


async def run(requests: int) -> None:
    key = b"\x42" * 32
    endpoint = MdpEndpoint(key, load_operations(), bind="127.0.0.1", port=0)
    await endpoint.start()
    try:
        for op in ("load_and_memory", "get_available_methods"):
            times = []
            for _ in range(requests):
                started = time.perf_counter()
                await call("127.0.0.1", key, [{"name": op}], port=endpoint.port, timeout=5)
                times.append((time.perf_counter() - started) * 1000)
            times.sort()
            p99 = times[int(len(times) * 0.99) - 1]
            median = statistics.median(times)
            print(f"{op:>22}: median {median:.2f} ms, p99 {p99:.2f} ms over {requests} requests")
        junk = wire.encode(wire.sign(b"\x00" * 32, {"operations": [{"name": "inventory"}]}))
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        count, burst = requests * 20, 32
        started = time.perf_counter()
        deadline = started + 60
        for sent_so_far in range(0, count, burst):
            for _ in range(burst):
                sock.sendto(junk, ("127.0.0.1", endpoint.port))
            # Bursts small enough for the socket buffer: wait until the endpoint read them.
            while endpoint.counters["bad_key"] < sent_so_far + burst:
                if time.perf_counter() > deadline:
                    raise SystemExit("the endpoint fell behind (datagrams lost?)")
                await asyncio.sleep(0)
        elapsed = time.perf_counter() - started
        dropped = endpoint.counters["bad_key"]
        rate = dropped / elapsed
        sent = endpoint.counters["sent"]
        print(f"{'wrong-key datagrams':>22}: {dropped} dropped in {elapsed:.2f} s ({rate:,.0f}/s)")
        print(f"{'replies to them':>22}: {sent - 2 * requests} (the good requests got {sent})")
        sock.close()
        # The CPU cost of a drop alone (decode, MAC check), without the socket round.
        before, n = endpoint.counters["bad_key"], 20000
        started = time.perf_counter()
        for _ in range(n):
            endpoint.received(junk, ("127.0.0.1", 9))
        per = (time.perf_counter() - started) / n * 1e6
        assert endpoint.counters["bad_key"] - before == n
        print(f"{'drop cost':>22}: {per:.1f} µs per wrong-key datagram ({1e6 / per:,.0f}/s)")
    finally:
        await endpoint.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=500)
    asyncio.run(run(parser.parse_args().requests))


if __name__ == "__main__":
    main()
