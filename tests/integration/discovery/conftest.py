"""Loopback fixtures: responders on 127.1.0.x at a free port, and a raw UDP client."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from typing import cast

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hwfleet.discovery import DeviceMetadata, DiscoveryResponder


def meta_for(index: int, *, address: str | None = None, **changes: object) -> DeviceMetadata:
    address = address or f"127.1.0.{index}"
    fields: dict[str, object] = {
        "uuid": str(uuid.UUID(int=0xD15C0 << 64 | index)),
        "name": f"sim-{index}",
        "serial": 5000 + index,
        "model_id": "sim-model",
        "version": "1.2.3",
        "ipaddr": address,
        "endpoint": (address, 12345),
    }
    fields.update(changes)
    return DeviceMetadata(**fields)  # type: ignore[arg-type]


@pytest.fixture
def port() -> int:
    """A UDP port free on 127.1.0.1 (tests never use 1901, which `hwfleet sim` tests use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.1.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def fleet(port: int) -> AsyncIterator[Callable[..., object]]:
    """``await fleet(n, signed=True)``: n responders on 127.1.0.1..n; closed afterwards."""
    started: list[DiscoveryResponder] = []

    async def make(count: int, *, signed: bool = True, first: int = 1) -> list[DiscoveryResponder]:
        batch = []
        for index in range(first, first + count):
            meta = meta_for(index)
            batch.append(
                DiscoveryResponder(
                    lambda meta=meta: meta,
                    bind=meta.ipaddr,
                    port=port,
                    group=None,
                    signing_key=Ed25519PrivateKey.generate() if signed else None,
                )
            )
        await asyncio.gather(*(r.start() for r in batch))
        started.extend(batch)
        return batch

    yield make
    await asyncio.gather(*(r.close() for r in started))


class Client(asyncio.DatagramProtocol):
    """A raw UDP socket on 127.0.0.1 whose received datagrams land in a queue."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait((data, addr))

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        if not data:
            # asyncio silently drops empty datagrams; the kernel sends them.
            sock = self.transport.get_extra_info("socket")
            with socket.socket(fileno=os.dup(sock.fileno())) as raw:
                raw.sendto(data, addr)
            return
        self.transport.sendto(data, addr)


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Client, local_addr=("127.0.0.1", 0))
    yield protocol
    transport.close()


@pytest.fixture
async def other_client() -> AsyncIterator[Client]:
    """A second source address (127.0.0.2): its own rate-limit bucket."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Client, local_addr=("127.0.0.2", 0))
    yield protocol
    transport.close()
