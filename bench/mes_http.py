"""CPU per MES lookup: hwfleet's MesClient against aiohttp and httpx, in the same run.

A burn-in scan makes one ``GET deviceInfo/getById`` per device on the event loop
that also consumes the replies, so the HTTP client's CPU per request bounds a
large scan. This starts ``hwfleet mes-sim`` in its own process and, for each
client, runs N lookups with C in flight on one pooled client, printing the
client process's CPU time per lookup (``time.process_time``: the mes-sim's
CPU is not counted) and the wall time:

* **MesClient** — hwfleet's client: its own HTTP/1.1 pool on httptools
  (``hwfleet.integrations.mes_http``), retries, response interpretation;
* **MesClient on aiohttp** — the same with its lookups through aiohttp, as it does
  for ``https`` or behind a proxy (and did for every lookup before);
* **aiohttp** — a bare ``ClientSession.get`` + ``read``;
* **httpx** — a bare ``AsyncClient.get`` with C pooled connections, the client
  DESIGN §9 first named for the MES, and httpx in pools of two connections
  (how hwfleet used it before: httpcore's pool slows down as it grows).

    .venv/bin/python bench/mes_http.py [--n 4000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scan import device, mes_sim  # the scan benchmark's devices and mes-sim process

from hwfleet.cli.common import run
from hwfleet.integrations.mes import MesClient

Lookup = Callable[[object], Awaitable[object]]


async def measure(lookup: Lookup, n: int, concurrency: int) -> tuple[float, float]:
    """(CPU µs per lookup in this process, wall seconds) for n lookups."""
    slots = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with slots:
            await lookup(device(i)["sn"])

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return (time.process_time() - cpu) / n * 1e6, time.perf_counter() - wall


async def mes_client(url: str, n: int, concurrency: int) -> tuple[float, float]:
    async with MesClient({"get": url}, max_connections=concurrency) as mes:
        return await measure(mes.get_device, n, concurrency)


async def mes_client_aiohttp(url: str, n: int, concurrency: int) -> tuple[float, float]:
    async with MesClient({"get": url}, max_connections=concurrency, lookup_client=False) as mes:
        return await measure(mes.get_device, n, concurrency)


async def bare_aiohttp(url: str, n: int, concurrency: int) -> tuple[float, float]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def lookup(sn: object) -> bytes:
            async with session.get(f"{url}?serialno={sn}") as response:
                return await response.read()

        return await measure(lookup, n, concurrency)


async def bare_httpx(url: str, n: int, concurrency: int) -> tuple[float, float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as client:

        async def lookup(sn: object) -> bytes:
            return (await client.get(f"{url}?serialno={sn}")).content

        return await measure(lookup, n, concurrency)


async def sharded_httpx(url: str, n: int, concurrency: int) -> tuple[float, float]:
    # httpcore's pool rescans its connections for every queued request, so hwfleet's earlier
    # httpx client kept many pools of two connections: httpx at its best here.
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
    clients = [httpx.AsyncClient(limits=limits) for _ in range(max(1, concurrency // 2))]
    turn = 0
    try:

        async def lookup(sn: object) -> bytes:
            nonlocal turn
            turn += 1
            client = clients[turn % len(clients)]
            return (await client.get(f"{url}?serialno={sn}")).content

        return await measure(lookup, n, concurrency)
    finally:
        for client in clients:
            await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    clients = {
        "MesClient": mes_client,
        "MesClient on aiohttp": mes_client_aiohttp,
        "aiohttp": bare_aiohttp,
        "httpx": bare_httpx,
        "httpx, pools of 2": sharded_httpx,
    }
    with tempfile.TemporaryDirectory(prefix="hwfleet-bench-") as tmp:
        profile = Path(tmp) / "profile.json"
        profile.write_text(json.dumps({"devices": [device(i) for i in range(args.n)]}))
        with mes_sim(profile) as base:
            url = f"{base}/deviceInfo/getById"
            figures = {}
            for name, client in clients.items():
                # The scan runs on uvloop when the `fast` extra is installed: so do these.
                figures[name] = run(client(url, args.n, args.concurrency), fast=True)
                cpu, wall = figures[name]
                print(f"{name:>22}: {cpu:5.0f} µs CPU per lookup, {args.n} lookups in {wall:.2f} s")
    ours = figures["MesClient"][0]
    best = min(figures["httpx"][0], figures["httpx, pools of 2"][0])
    print(f"\nMesClient uses {ours / best:.0%} of the CPU per lookup of httpx at its best")
    print(f"MesClient uses {ours / figures['MesClient on aiohttp'][0]:.0%} of its CPU on aiohttp")


if __name__ == "__main__":
    main()
