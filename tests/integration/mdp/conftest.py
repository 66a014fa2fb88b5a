"""An MDP endpoint on loopback and a raw client socket that speaks to it."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hwfleet.mdp import wire
from hwfleet.mdp.endpoint import MdpEndpoint
from hwfleet.mdp.operations import Operations, load_operations

KEY = bytes.fromhex("11" * 32)


@pytest.fixture
async def endpoint() -> AsyncIterator[MdpEndpoint]:
    ep = MdpEndpoint(KEY, load_operations(), bind="127.0.0.1", port=0)
    await ep.start()
    try:
        yield ep
    finally:
        await ep.close()


class RawClient:
    """A blocking UDP socket in a thread-free style: the endpoint runs on the test's loop, so
    each receive is awaited through the loop's socket API."""

    def __init__(self, port: int, key: bytes = KEY) -> None:
        self.key = key
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.connect(("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        import asyncio

        await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def recv(self, timeout: float) -> dict[str, Any]:
        import asyncio

        async with asyncio.timeout(timeout):
            data = await asyncio.get_running_loop().sock_recv(self.sock, 65536)
        obj: dict[str, Any] = json.loads(data)
        return obj

    def request(self, ops: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"version": "2", "operations": ops, **fields}
        return wire.sign(self.key, body)

    async def until(self, nonce: str, timeout: float) -> list[dict[str, Any]]:
        """Every datagram received up to and including the reply to ``nonce``."""
        got = []
        while True:
            obj = await self.recv(timeout)
            got.append(obj)
            if obj.get("reply_to") == nonce and obj.get("part", 1) == obj.get("parts", 1):
                return got

    async def silent(self, bad: bytes, timeout: float) -> bool:
        """Send ``bad`` then a good probe: True when only the probe is answered (datagrams on
        loopback arrive in order and the endpoint drops a bad one before reading the next)."""
        await self.send(bad)
        probe = self.request([{"name": "endpoint_stats"}])
        await self.send(wire.encode(probe))
        got = await self.until(probe["nonce"], timeout)
        return len(got) == 1

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def client(endpoint: MdpEndpoint) -> Any:
    c = RawClient(endpoint.port)
    yield c
    c.close()


def big_operations(sizes: dict[str, int]) -> Operations:
    """Operations returning strings of the given sizes (to exercise splitting)."""
    ops = load_operations(plugins=False)
    for name, size in sizes.items():

        def make(size: int = size) -> Any:
            def op(ctx: Any) -> str:
                """Returns a long string."""
                return "x" * size

            return op

        ops.add(name, make())
    return ops


__all__ = ["KEY", "RawClient", "big_operations", "os"]
