"""Scans over RabbitMQ and PostgreSQL: replicas sharing one scan, restarts, MES outages."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from hwfleet.bus import Bus, open_bus


def rack(kit: SimpleNamespace, n: int, start: int = 5000) -> list[Any]:
    devices = []
    for i in range(n):
        sn: Any = start + i if i % 2 == 0 else f"S{start + i}"
        devices.append(
            kit.SimDevice(f"u-{i:04d}", sn, [("eth0", f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}")])
        )
    return devices


async def device_bus(url: str) -> Bus:
    bus = open_bus(url)
    await bus.start()
    return bus


async def check_posts(kit: SimpleNamespace, base: str, n: int, passed: int) -> dict[str, Any]:
    async def delivered() -> bool:
        return len((await kit.received(base))["posts"]) >= 3

    await kit.eventually(delivered, timeout=30)
    got = await kit.received(base)
    posts = {p["path"]: p["body"] for p in got["posts"]}
    assert len(got["posts"]) == 3, got["posts"]
    assert got["duplicates"] == []
    document = posts["/log/deviceScan"]
    assert len(document["scaninfo"]) == n
    assert sum(1 for e in document["scaninfo"] if e["result"] == "1") == passed
    assert len(posts["/operations/pair"]["snArray"]) == passed
    assert posts["/notifications/devicescan"]["status"] == f"{passed} devices passed scanning"
    return posts


async def run_scan(
    kit: SimpleNamespace, db: str, bus_url: str, base: str, devices: list[Any]
) -> None:
    dbus = await device_bus(bus_url)
    fleet = kit.SimFleet(dbus, devices)
    try:
        await fleet.start()
        async with kit.controller(db, bus_url, base, quiet=10.0) as ctl:
            await fleet.register(ctl.store)
            finished = await kit.finished_events(ctl.bus)
            await ctl.scans.start()
            async with asyncio.timeout(30):
                data = await finished.get()
            assert data["reason"] == "every expected device answered"
            await check_posts(kit, base, len(devices), len(devices))
    finally:
        await fleet.close()
        await dbus.close()


@pytest.mark.rabbit
async def test_scan_over_amqp_with_sqlite(
    amqp_url: str, tmp_path: Path, mes_sim: Any, kit: SimpleNamespace
) -> None:
    devices = rack(kit, 20)
    async with mes_sim(kit.profile_for(devices)) as (_, base):
        await run_scan(kit, f"sqlite+aiosqlite:///{tmp_path / 'hw.db'}", amqp_url, base, devices)


@pytest.mark.rabbit
@pytest.mark.postgres
async def test_scan_over_amqp_with_postgres(
    amqp_url: str, pg_url: str, mes_sim: Any, kit: SimpleNamespace
) -> None:
    devices = rack(kit, 20)
    async with mes_sim(kit.profile_for(devices)) as (_, base):
        await run_scan(kit, pg_url, amqp_url, base, devices)


@pytest.mark.rabbit
@pytest.mark.postgres
async def test_two_replicas_share_one_scan_and_post_once(
    amqp_url: str, pg_url: str, mes_sim: Any, kit: SimpleNamespace
) -> None:
    devices = rack(kit, 200)
    async with mes_sim(kit.profile_for(devices)) as (_, base):
        dbus = await device_bus(amqp_url)
        fleet = kit.SimFleet(dbus, devices)
        await fleet.start()
        try:
            async with (
                kit.controller(pg_url, amqp_url, base, quiet=10.0) as a,
                kit.controller(pg_url, amqp_url, base, quiet=10.0) as b,
            ):
                await fleet.register(a.store)
                finished = await kit.finished_events(a.bus)
                scan = await a.scans.start()
                async with asyncio.timeout(30):
                    await finished.get()
                await check_posts(kit, base, 200, 200)
                # Both replicas did part of the work; the results are one set.
                assert a.scans.stored > 0 and b.scans.stored > 0
                assert a.scans.stored + b.scans.stored == 200
                async with b.store.tx(readonly=True) as tx:
                    record = await tx.scans.get(scan.operationid)
                assert record is not None and record.state == "complete"
                # Posts went out once between the two outbox workers as well. The MES has
                # them before the worker commits "delivered": wait for the commit.

                async def all_delivered() -> bool:
                    async with a.store.tx(readonly=True) as tx:
                        rows = await tx.outbox.list()
                    return len(rows) == 3 and all(r.state == "delivered" for r in rows)

                await kit.eventually(all_delivered, timeout=30)
        finally:
            await fleet.close()
            await dbus.close()


@pytest.mark.rabbit
async def test_controller_restarted_mid_scan_finishes_it(
    amqp_url: str, tmp_path: Path, mes_sim: Any, kit: SimpleNamespace
) -> None:
    """Half the devices answer before the controller stops, half while it is down."""
    devices = rack(kit, 20)
    late = devices[10:]
    for device in late:
        device.silent = True
    db = f"sqlite+aiosqlite:///{tmp_path / 'hw.db'}"
    async with mes_sim(kit.profile_for(devices)) as (_, base):
        dbus = await device_bus(amqp_url)
        fleet = kit.SimFleet(dbus, devices)
        await fleet.start()
        try:
            async with kit.controller(db, amqp_url, base, quiet=30.0) as first:
                await fleet.register(first.store)
                scan = await first.scans.start()

                async def half_stored() -> bool:
                    return first.scans.stored == 10

                await kit.eventually(half_stored)
            # Controller down: the late replies wait in the durable hwinfo_queue.
            for device in late:
                await dbus.send("hwinfo_queue", device.body(scan.operationid), persistent=True)
            finished = await kit.finished_events(dbus)  # before the restart: it may finish at once
            async with kit.controller(db, amqp_url, base, quiet=30.0) as second:
                async with asyncio.timeout(30):
                    data = await finished.get()
                assert data["operationid"] == scan.operationid
                assert data["reason"] == "every expected device answered"
                assert second.scans.stored == 10  # the early half was not looked up again
                # Inside the block: the restarted controller's outbox worker delivers the posts.
                await check_posts(kit, base, 20, 20)
            # The resumed controller broadcast the scan again for devices that had not answered.
            assert all(d.answered.count(scan.operationid) >= 2 for d in devices)
        finally:
            await fleet.close()
            await dbus.close()


async def test_mes_down_for_the_first_seconds_of_a_scan(
    tmp_path: Path, mes_sim: Any, kit: SimpleNamespace
) -> None:
    devices = rack(kit, 10)
    async with mes_sim(kit.profile_for(devices)) as (sim, base):
        async with httpx.AsyncClient() as http:
            await http.post(f"{base}/_faults", json={"down_for": 1.5})
        db = f"sqlite+aiosqlite:///{tmp_path / 'hw.db'}"
        async with kit.controller(db, "memory://", base, quiet=10.0) as ctl:
            fleet = kit.SimFleet(ctl.bus, devices)
            await fleet.start()
            await fleet.register(ctl.store)
            await ctl.scans.start()
            await check_posts(kit, base, 10, 10)
        assert sim.lookups == 10  # every lookup eventually answered, once each
