"""Boot test fixtures: a bus (memory, RabbitMQ) and BootService on a namespaced network."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.integration.boot.bootnet import SERVER_IF, SUBNET, BootNet, boot_network

from hwfleet.boot.service import BootService
from hwfleet.bus import open_bus
from hwfleet.bus.base import Bus, Delivery
from hwfleet.bus.codec import decode_object
from hwfleet.controller.events import EventPublisher
from hwfleet.settings import ServerSettings
from hwfleet.store import Store, open_store
from hwfleet.trust.tokens import expiry, new_token, token_hash

#: What the controller's CA fingerprint looks like (the discovery script carries it).
CA_FINGERPRINT = "SHA256:" + ":".join(["5a"] * 32)


class Watch:
    """Events on the bus, awaited by key."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self._changed = asyncio.Condition()

    async def __call__(self, delivery: Delivery) -> None:
        async with self._changed:
            self.seen.append((delivery.routing_key, decode_object(delivery.body)["data"]))
            self._changed.notify_all()

    async def wait(self, key: str, timeout: float = 20) -> dict[str, Any]:
        async with asyncio.timeout(timeout), self._changed:
            while True:
                for index, (seen, data) in enumerate(self.seen):
                    if seen == key:
                        del self.seen[index]
                        return data
                await self._changed.wait()


@pytest.fixture(params=["memory", "amqp"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("amqp_url")
    bus = open_bus(url)
    await bus.start()
    yield bus
    await bus.close()


@pytest.fixture
async def boot(bus: Bus, tmp_path: Path) -> AsyncIterator[tuple[BootService, BootNet, Watch]]:
    with boot_network() as net:
        settings = ServerSettings(
            data_dir=str(tmp_path / "data"),
            boot_interface=SERVER_IF,
            dhcp_range=f"{SUBNET}.100-{SUBNET}.150",
            boot_kea_launcher=f"ip netns exec {net.server}",
            boot_tftp_listen="off",
            boot_lease_poll=0.2,
            dhcp_lease_time=600,
        )
        store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'hwfleet.db'}")
        watch = Watch()
        subscription = await bus.subscribe("events", "#", watch)
        service = BootService(
            settings,
            store,
            bus,
            EventPublisher(store, bus),
            issue_token=token_issuer(store),
            ca_fingerprint=CA_FINGERPRINT,
        )
        try:
            await service.start()
            yield service, net, watch
        finally:
            await service.close()
            await subscription.cancel()
            await store.close()


def token_issuer(store: Store) -> Any:
    """Real single-use enrollment tokens in the store (what KeyAdmin.create_token does)."""

    async def issue(ttl: float) -> str:
        token, now = new_token(), datetime.now(UTC)
        async with store.tx() as tx:
            await tx.tokens.add(token_hash(token), expires_at=expiry(ttl, now), at=now)
        return token

    return issue
