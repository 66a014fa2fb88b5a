"""The caller's side: send one signed request, gather its (possibly split) authenticated reply.

A reply counts only if its MAC checks under the machine's key and its ``reply_to`` is
our request's nonce; anything else arriving on the socket is ignored. Silence is the
endpoint's answer to every refusal, so a timeout names the likely causes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from hwfleet.mdp import DEFAULT_PORT, wire


class MdpNoReply(TimeoutError):
    """No authenticated reply in time."""


class _Collector(asyncio.DatagramProtocol):
    def __init__(self, key: bytes, nonce: str) -> None:
        self.key, self.nonce = key, nonce
        self.parts: dict[int, dict[str, Any]] = {}
        self.expected: int | None = None
        self.done = asyncio.Event()
        self.ignored = 0

    def datagram_received(self, data: bytes, addr: tuple[str | Any, ...]) -> None:
        try:
            obj = wire.decode(data)
        except wire.WireError:
            self.ignored += 1
            return
        if obj.get("reply_to") != self.nonce or not wire.verify(self.key, obj):
            self.ignored += 1
            return
        parts = obj.get("parts", 1)
        part = obj.get("part", 1)
        if not isinstance(parts, int) or not isinstance(part, int) or not 1 <= part <= parts:
            self.ignored += 1
            return
        self.expected = parts
        self.parts[part] = obj
        if len(self.parts) >= parts:
            self.done.set()


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One reply from its parts, in order, without the transport fields."""
    first = parts[0]
    return {
        "status": all(p.get("status") is True for p in parts),
        "version": first.get("version"),
        "operations": [op for p in parts for op in p.get("operations", [])],
        "cluster_info": first.get("cluster_info", {}),
    }


async def call(
    host: str,
    key: bytes,
    operations: list[dict[str, Any]],
    *,
    port: int = DEFAULT_PORT,
    cluster_info: dict[str, Any] | None = None,
    timeout: float = 5.0,
) -> dict[str, Any]:
    """Run ``operations`` on the machine at ``host`` and return its merged reply."""
    request = wire.request(key, operations, cluster_info)
    data = wire.encode(request)
    if len(data) > wire.MAX_DATAGRAM:
        raise ValueError(f"request is {len(data)} bytes; the limit is {wire.MAX_DATAGRAM}")
    loop = asyncio.get_running_loop()
    collector = _Collector(key, request["nonce"])
    transport, _ = await loop.create_datagram_endpoint(lambda: collector, remote_addr=(host, port))
    started = time.monotonic()
    try:
        transport.sendto(data)
        try:
            async with asyncio.timeout(timeout):
                await collector.done.wait()
        except TimeoutError:
            got = ""
            if collector.parts:
                got = f" ({len(collector.parts)} of {collector.expected} parts)"
            raise MdpNoReply(
                f"no authenticated reply from {host}:{port} within {timeout:g} s{got}: the "
                "endpoint may be off, the key in .known_machines may be wrong, or the clocks "
                "more than 30 s apart"
            ) from None
    finally:
        transport.close()
    reply = merge([collector.parts[i] for i in sorted(collector.parts)])
    reply["rtt_ms"] = round((time.monotonic() - started) * 1000, 2)
    return reply
