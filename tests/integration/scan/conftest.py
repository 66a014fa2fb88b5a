"""Fixtures for scan tests: a real mes-sim, a real store, and simulated devices on the bus.

The simulated devices speak the real bus protocol: each binds its own queue
to the ``devicescan`` fanout and answers a scan command by sending its reply
to ``hwinfo_queue`` (persistent), exactly as an AMQP agent does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import httpx
import msgspec
import pytest

from hwfleet.bus import Bus, Delivery, Subscription, open_bus
from hwfleet.controller.outbox import OutboxWorker
from hwfleet.controller.scan import ScanService
from hwfleet.integrations.mes import MesClient
from hwfleet.settings import ServerSettings
from hwfleet.sim.mes import MesSimulator, serve
from hwfleet.store import Store, open_store


@dataclass
class SimDevice:
    """One simulated device; ``reply`` overrides the body it sends (for malformed replies)."""

    uuid: str
    sn: Any
    macs: list[tuple[str, str]]
    reply: Callable[[int], bytes] | None = None
    silent: bool = False
    answered: list[int] = field(default_factory=list)

    def body(self, operationid: int) -> bytes:
        if self.reply is not None:
            return self.reply(operationid)
        return msgspec.json.encode(
            {
                "operationid": operationid,
                "sn": self.sn,
                "uuid": self.uuid,
                "macinfo": [{"interface": i, "macaddr": m} for i, m in self.macs],
                "pci": [
                    {
                        "address": "0000:04:00.0",
                        "vendor": "0x8086",
                        "device": "0x1533",
                        "class": "0x020000",
                    }
                ],
            }
        )


class SimFleet:
    """Simulated devices bound to ``devicescan`` on ``bus``."""

    def __init__(self, bus: Bus, devices: list[SimDevice]) -> None:
        self.bus = bus
        self.devices = devices
        self._subs: list[Subscription] = []

    async def start(self) -> None:
        for device in self.devices:
            self._subs.append(await self.bus.subscribe("devicescan", "", self._handler(device)))

    def _handler(self, device: SimDevice) -> Callable[[Delivery], Awaitable[None]]:
        async def on_scan(delivery: Delivery) -> None:
            command = msgspec.json.decode(delivery.body)
            assert command["action"] == 1  # seed 000: the reference client acts on 1 only
            device.answered.append(command["operationid"])
            if not device.silent:
                await self.bus.send(
                    "hwinfo_queue", device.body(command["operationid"]), persistent=True
                )

        return on_scan

    async def register(self, store: Store) -> None:
        now = datetime.now(UTC)
        async with store.tx() as tx:
            for d in self.devices:
                await tx.devices.upsert(
                    d.uuid,
                    serial=d.sn,
                    name=f"dev-{d.sn}",
                    model_id="sim",
                    version="1",
                    macs=[m for _, m in d.macs],
                    ipaddr="127.1.0.1",
                    st_id=0,
                    transport="amqp",
                    online=True,
                    at=now,
                )

    async def close(self) -> None:
        for sub in self._subs:
            await sub.cancel()


def profile_for(devices: list[SimDevice], mes: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "devices": [
            {"sn": d.sn, "interfaces": [{"name": i, "mac": m} for i, m in d.macs]} for d in devices
        ],
        "mes": mes or {},
    }


def mes_urls(base: str) -> dict[str, str]:
    return ServerSettings(mes=base).mes_urls()


async def received(base: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{base}/_received")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


async def eventually(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait until ``predicate`` holds (state owned by an HTTP server), failing at a deadline."""
    async with asyncio.timeout(timeout):
        while not await predicate():  # noqa: ASYNC110 (another server's state, under a deadline)
            await asyncio.sleep(0.02)


async def finished_events(bus: Bus) -> asyncio.Queue[dict[str, Any]]:
    """Every ``scan.finished.*`` event's data, in order (subscribe before starting a scan)."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def on_event(delivery: Delivery) -> None:
        queue.put_nowait(msgspec.json.decode(delivery.body)["data"])

    await bus.subscribe("events", "scan.finished.#", on_event)
    return queue


@dataclass
class Controller:
    """One controller replica's scan half: store, bus, MES client, outbox, scan service."""

    store: Store
    bus: Bus
    mes: MesClient
    outbox: OutboxWorker
    scans: ScanService

    async def close(self) -> None:
        await self.scans.close()
        await self.outbox.close()
        await self.mes.aclose()
        await self.bus.close()
        await self.store.close()


@asynccontextmanager
async def controller(
    db_url: str,
    bus_url: str,
    mes_base: str,
    *,
    quiet: float = 1.0,
    bus: Bus | None = None,
    **options: Any,
) -> AsyncIterator[Controller]:
    """``options``: further :class:`ServerSettings` (the MES retries 5 s unless set)."""
    options.setdefault("mes_retry_for", 5.0)
    settings = ServerSettings(mes=mes_base, scan_quiet_timeout=quiet, **options)
    store = await open_store(db_url)
    own_bus = bus is None
    if bus is None:
        bus = open_bus(bus_url)
        await bus.start()
    mes = MesClient.from_settings(settings, backoff=0.05, backoff_cap=0.5)
    outbox = OutboxWorker(store, mes, poll_interval=0.2, backoff=0.05, backoff_cap=0.5, lease=5.0)
    scans = ScanService(store, bus, mes, settings, outbox=outbox, tick=0.05)
    await outbox.start()
    await scans.serve()
    ctl = Controller(store, bus, mes, outbox, scans)
    try:
        yield ctl
    finally:
        await scans.close()
        await outbox.close()
        await mes.aclose()
        if own_bus:
            await bus.close()
        await store.close()


@pytest.fixture
def mes_sim() -> Callable[[dict[str, Any]], AbstractAsyncContextManager[tuple[MesSimulator, str]]]:
    @asynccontextmanager
    async def run(profile: dict[str, Any]) -> AsyncIterator[tuple[MesSimulator, str]]:
        sim = MesSimulator.from_profile(profile)
        async with serve(sim) as base:
            yield sim, base

    return run


@pytest.fixture
def kit() -> SimpleNamespace:
    """The helpers above, for test modules (conftest classes cannot be imported there)."""
    return SimpleNamespace(
        SimDevice=SimDevice,
        SimFleet=SimFleet,
        profile_for=profile_for,
        received=received,
        eventually=eventually,
        finished_events=finished_events,
        controller=controller,
        mes_urls=mes_urls,
    )
