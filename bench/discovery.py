"""Benchmark: 1,000 simulated responders on 127.1.0.1…, one browser probing 127.1.0.0/22.

Prints how long the responders took to start, and the seconds until the browser listed
every device (goal ≤ 2 s), signed and unsigned. Everything stays on loopback.

    .venv/bin/python bench/discovery.py [--devices 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import statistics
import time
import uuid

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hwfleet.discovery import DeviceMetadata, DiscoveryBrowser, DiscoveryResponder, public_raw


def address(index: int) -> str:
    n = index + 1  # DESIGN §8: simulated device i binds 127.1.0.1 + i
    return f"127.1.{n >> 8}.{n & 255}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.1.0.1", 0))
        return int(sock.getsockname()[1])


async def run(devices: int, rounds: int, signed: bool) -> None:
    port = free_port()
    keys: dict[str, bytes] = {}
    responders = []
    for i in range(devices):
        addr = address(i)
        meta = DeviceMetadata(
            uuid=str(uuid.uuid4()),
            name=f"bench-{i}",
            serial=100000 + i,
            model_id="bench",
            version="1.0",
            ipaddr=addr,
            endpoint=(addr, 12345),
        )
        key = Ed25519PrivateKey.generate() if signed else None
        if key is not None:
            keys[meta.uuid] = public_raw(key)
        responders.append(
            DiscoveryResponder(
                lambda meta=meta: meta, bind=addr, port=port, group=None, signing_key=key
            )
        )
    started = time.perf_counter()
    await asyncio.gather(*(r.start() for r in responders))
    start_s = time.perf_counter() - started
    last = address(devices - 1)
    cidr = "127.1.0.0/22" if devices <= 1022 else f"127.1.0.0/{32 - (devices + 1).bit_length()}"
    times = []
    try:
        for _ in range(rounds):
            browser = DiscoveryBrowser(probe=[cidr], port=port, known_keys=keys.get)
            async with browser:
                began = time.perf_counter()
                found = await browser.scan(10.0, expect=devices)
                elapsed = time.perf_counter() - began
            if len(found) != devices:
                raise SystemExit(f"only {len(found)} of {devices} listed within 10 s")
            if signed and not all(d.trusted for d in found):
                raise SystemExit("a signed device was not verified")
            times.append(elapsed)
    finally:
        await asyncio.gather(*(r.close() for r in responders))
    kind = "signed (verified against enrolled keys)" if signed else "unsigned"
    print(f"{devices} responders {kind}, 127.1.0.1..{last}, probe {cidr}")
    print(f"  start all responders: {start_s:.3f} s")
    print(
        f"  until all listed:     median {statistics.median(times):.3f} s, "
        f"best {min(times):.3f} s, worst {max(times):.3f} s over {rounds} rounds (goal <= 2 s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.devices + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.devices + 1000), hard))
    for signed in (True, False):
        asyncio.run(run(args.devices, args.rounds, signed))


if __name__ == "__main__":
    main()
