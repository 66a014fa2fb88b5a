"""A database that is briefly unavailable mid-scan delays the scan; it never blames the devices.

Real failures only: a SQLite file on a small tmpfs that the test fills to the
last byte, and PostgreSQL behind a TCP proxy that the test cuts and restores
(the shared PostgreSQL server itself keeps running). The replies arrive while
the store refuses them; they must wait (unacked) and be stored once it is back,
the quiet timeout must not fire meanwhile, and only an outage longer than
``scan_store_outage`` may end the scan — as an internal error, not as silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec
import pytest
from tests.conftest import service_missing
from tests.tcp_proxy import TcpProxy, tcp_proxy

from hwfleet.bus import Bus

QUIET = 0.5
#: How long each outage lasts: several quiet timeouts, so a scan that took the
#: outage for silence would have finished (wrongly) inside it.
OUTAGE = 6 * QUIET


class SmallDisk:
    """A tmpfs of a few MiB that can be filled to the last block and freed again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._filler = path / "filler"

    def fill(self) -> None:
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            block = b"\0" * 65536
            with contextlib.suppress(OSError):  # ENOSPC: full
                while True:
                    os.write(fd, block)
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0")
        finally:
            os.close(fd)

    def free(self) -> None:
        self._filler.unlink()


@contextlib.contextmanager
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    if os.geteuid() != 0:
        service_missing("mounting a tmpfs to fill needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        service_missing(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield SmallDisk(mount)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def devices(kit: SimpleNamespace, n: int = 4) -> list[Any]:
    # Silent: the test sends their replies itself, once the store is out.
    return [
        kit.SimDevice(f"u-{i}", 7000 + i, [("eth0", f"02:00:00:00:70:{i:02x}")], silent=True)
        for i in range(n)
    ]


def reply(device: Any, operationid: int) -> bytes:
    """The device's reply, with a large PCI list: each result needs new database pages."""
    pci = [
        {"address": f"0000:{n >> 8:02x}:{n & 255:02x}.0", "vendor": "0x8086", "device": "0x1533"}
        | {"class": "0x020000", "driver": "igb" * 20}
        for n in range(1500)
    ]
    return msgspec.json.encode(
        {
            "operationid": operationid,
            "sn": device.sn,
            "uuid": device.uuid,
            "macinfo": [{"interface": i, "macaddr": m} for i, m in device.macs],
            "pci": pci,
        }
    )


async def send_replies(bus: Bus, fleet: list[Any], operationid: int) -> None:
    for device in fleet:
        await bus.send("hwinfo_queue", reply(device, operationid), persistent=True)


def via_proxy(url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = f"{netloc[0]}@" if len(netloc) == 2 else ""
    return urlunsplit(parts._replace(netloc=f"{userinfo}127.0.0.1:{proxy.port}"))


async def posts(kit: SimpleNamespace, base: str, count: int) -> dict[str, Any]:
    async def delivered() -> bool:
        return len((await kit.received(base))["posts"]) >= count

    await kit.eventually(delivered, timeout=30)
    got = await kit.received(base)
    assert got["duplicates"] == []
    return {p["path"]: p["body"] for p in got["posts"]}


async def outage_mid_scan(
    kit: SimpleNamespace,
    base: str,
    db: str,
    bus_url: str,
    cut: Any,
    restore: Any,
    *,
    dbus: Bus | None = None,
    lasting: float = OUTAGE,
) -> None:
    """Start a scan, cut the store, deliver every reply, hold the outage, restore it."""
    fleet = devices(kit)
    async with kit.controller(db, bus_url, base, quiet=QUIET) as ctl:
        await kit.SimFleet(ctl.bus, fleet).register(ctl.store)
        finished = await kit.finished_events(ctl.bus)
        scan = await ctl.scans.start()
        await cut()
        await send_replies(dbus or ctl.bus, fleet, scan.operationid)
        async with asyncio.timeout(10):
            await ctl.scans.outage.began.wait()  # the writer met the outage
        await asyncio.sleep(lasting)  # the outage lasts: not a synchronisation
        assert finished.empty(), "the scan finished while its replies waited on the store"
        await restore()
        async with asyncio.timeout(30):
            data = await finished.get()
        assert data["reason"] == "every expected device answered", data
        assert data["state"] == "complete" and data["passed"] == len(fleet)
        async with ctl.store.tx(readonly=True) as tx:
            stored = await tx.scans.results(scan.operationid, hwinfo=False)
        assert sorted(r.device_uuid for r in stored) == sorted(d.uuid for d in fleet)
        sent = await posts(kit, base, 3)
    status = sent["/notifications/devicescan"]["status"]
    assert status == f"{len(fleet)} devices passed scanning"
    for entry in sent["/log/deviceScan"]["scaninfo"]:
        assert entry["result"] == "1", entry


async def test_sqlite_disk_full_mid_scan_delays_it_and_loses_no_reply(
    tmp_path: Path, mes_sim: Any, kit: SimpleNamespace
) -> None:
    with small_disk(tmp_path) as disk:
        async with mes_sim(kit.profile_for(devices(kit))) as (_, base):

            async def fill() -> None:
                disk.fill()

            async def free() -> None:
                disk.free()

            db = f"sqlite+aiosqlite:///{disk.path / 'hw.db'}"
            await outage_mid_scan(kit, base, db, "memory://", fill, free)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.rabbit
async def test_postgres_unreachable_12_s_mid_scan_over_rabbitmq_delays_it(
    pg_url: str, amqp_url: str, mes_sim: Any, kit: SimpleNamespace
) -> None:
    target = urlsplit(pg_url)
    async with (
        tcp_proxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy,
        mes_sim(kit.profile_for(devices(kit))) as (_, base),
    ):
        from hwfleet.bus import open_bus

        dbus = open_bus(amqp_url)  # the devices' own connection to the broker
        await dbus.start()
        try:
            db = via_proxy(pg_url, proxy)
            # 12 s, as in issue 21: longer than RabbitMQ's single redelivery ever waited.
            await outage_mid_scan(
                kit, base, db, amqp_url, proxy.cut, proxy.restore, dbus=dbus, lasting=12.0
            )
        finally:
            await dbus.close()


@pytest.mark.postgres
async def test_postgres_unreachable_on_the_memory_bus_delays_it(
    pg_url: str, mes_sim: Any, kit: SimpleNamespace
) -> None:
    target = urlsplit(pg_url)
    async with (
        tcp_proxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy,
        mes_sim(kit.profile_for(devices(kit))) as (_, base),
    ):
        await outage_mid_scan(
            kit, base, via_proxy(pg_url, proxy), "memory://", proxy.cut, proxy.restore
        )


@pytest.mark.postgres
async def test_an_outage_past_the_bound_ends_the_scan_in_an_internal_error(
    pg_url: str, mes_sim: Any, kit: SimpleNamespace
) -> None:
    fleet = devices(kit)
    target = urlsplit(pg_url)
    async with (
        tcp_proxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy,
        mes_sim(kit.profile_for(fleet)) as (_, base),
    ):
        db = via_proxy(pg_url, proxy)
        async with kit.controller(db, "memory://", base, quiet=QUIET, scan_store_outage=1.0) as ctl:
            await kit.SimFleet(ctl.bus, fleet).register(ctl.store)
            finished = await kit.finished_events(ctl.bus)
            scan = await ctl.scans.start()
            await proxy.cut()
            await send_replies(ctl.bus, fleet, scan.operationid)
            async with asyncio.timeout(15):
                await ctl.scans.outage.gave_up.wait()
            await proxy.restore()
            async with asyncio.timeout(30):
                data = await finished.get()
            async with ctl.store.tx(readonly=True) as tx:
                record = await tx.scans.get(scan.operationid)
            sent = await posts(kit, base, 2)  # nobody passed: no Pair
    assert data["state"] == "failed" and data["reason"] == "database unavailable", data
    assert record is not None and record.state == "failed"
    status = sent["/notifications/devicescan"]["status"]
    assert status == (
        "internal error: the database was unavailable for more than 1 s (connection refused), "
        "so this scan's replies could not be recorded (0 devices passed scanning)"
    )
    assert "/operations/pair" not in sent
    for entry in sent["/log/deviceScan"]["scaninfo"]:
        assert entry["result"] == "0"
        assert entry["error"].startswith("internal error: the database was unavailable"), entry
