"""End to end on the embedded default: memory bus, SQLite store, real mes-sim over HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec

from hwfleet.bus import Delivery

MIB = 1 << 20


def fleet_devices(kit: SimpleNamespace) -> list[Any]:
    D = kit.SimDevice
    return [
        D("u-1001", 1001, [("enp4s0", "e0:18:7d:2e:ca:68"), ("enp5s0", "e0:18:7d:2e:ca:69")]),
        D("u-b2", "B-2", [("eth0", "aa:bb:cc:00:00:02")]),
        D("u-1003", 1003, [("eth0", "00:00:00:00:10:03"), ("usb0", "02:00:00:00:10:03")]),
        D("u-1004", 1004, [("eth0", "00:00:00:00:10:04")]),
        D("u-1005", 1005, [("eth0", "00:00:00:00:10:05")], silent=True),
        D("u-1006", 1006, [("eth0", "not-a-mac")]),
        D("u-1007", 1007, [("renamed0", "00:00:00:00:10:07")]),
    ]


def mes_section() -> dict[str, Any]:
    return {
        "records": {
            # Case and dash differences from what the device reports.
            "B-2": [
                {
                    "serialNo": "B-2",
                    "macInfo": [{"interface": "eth0", "macaddr": "AA-BB-CC-00-00-02"}],
                }
            ],
            # The usb0 MAC is not registered: 1003 fails on an extra MAC.
            "1003": [
                {
                    "serialNo": "1003",
                    "macInfo": [{"interface": "eth0", "macaddr": "00:00:00:00:10:03"}],
                }
            ],
            # Two rows: the union must be used (the second row must not replace the first).
            "1001": [
                {
                    "serialNo": "1001",
                    "macInfo": [{"interface": "enp4s0", "macaddr": "e0:18:7d:2e:ca:68"}],
                },
                {
                    "serialNo": "1001",
                    "macInfo": [{"interface": "enp5s0", "macaddr": "e0:18:7d:2e:ca:69"}],
                },
            ],
            # Interface renamed on the device: matched by MAC.
            "1007": [
                {
                    "serialNo": "1007",
                    "macInfo": [{"interface": "eth0", "macaddr": "00:00:00:00:10:07"}],
                }
            ],
        },
        "unregistered": [1004],
    }


def by_sn(document: dict[str, Any]) -> dict[Any, dict[str, Any]]:
    return {entry["sn"]: entry for entry in document["scaninfo"]}


async def test_scan_end_to_end(tmp_path: Path, mes_sim: Any, kit: SimpleNamespace) -> None:
    devices = fleet_devices(kit)
    async with mes_sim(kit.profile_for(devices, mes_section())) as (_, base):
        db = f"sqlite+aiosqlite:///{tmp_path / 'hw.db'}"
        async with kit.controller(db, "memory://", base, quiet=0.5) as ctl:
            events: list[tuple[str, dict[str, Any]]] = []

            async def on_event(delivery: Delivery) -> None:
                events.append((delivery.routing_key, msgspec.json.decode(delivery.body)))

            await ctl.bus.subscribe("events", "scan.#", on_event)
            fleet = kit.SimFleet(ctl.bus, devices)
            await fleet.start()
            await fleet.register(ctl.store)

            scan = await ctl.scans.start()
            assert scan.operationid == 1
            assert len(scan.expected) == 7

            async def delivered() -> bool:
                got = await kit.received(base)
                return len(got["posts"]) == 3

            await kit.eventually(delivered)
            got = await kit.received(base)

    posts = {p["path"]: p for p in got["posts"]}
    assert set(posts) == {"/log/deviceScan", "/operations/pair", "/notifications/devicescan"}
    assert got["duplicates"] == []
    assert all(n == 1 for n in got["counts"].values())
    document = posts["/log/deviceScan"]["body"]
    assert list(document) == ["operationid", "pairInfo", "scaninfo"]
    assert document["operationid"] == 1 and document["pairInfo"] == []
    entries = by_sn(document)
    assert set(entries) == {1001, "B-2", 1003, 1004, 1005, 1006, 1007}
    for entry in document["scaninfo"]:
        assert list(entry)[:3] == ["macinfo", "sn", "result"]
        for mac in entry["macinfo"]:
            assert list(mac) == ["interface", "macaddr", "scanstatus"]
            assert mac["scanstatus"] in ("0", "1")

    assert entries[1001]["result"] == "1" and len(entries[1001]["macinfo"]) == 2
    assert entries["B-2"] == {
        "macinfo": [{"interface": "eth0", "macaddr": "aa:bb:cc:00:00:02", "scanstatus": "1"}],
        "sn": "B-2",
        "result": "1",
    }
    assert [m["scanstatus"] for m in entries[1003]["macinfo"]] == ["1", "0"]
    assert entries[1003]["result"] == "0"
    assert entries[1004]["result"] == "0" and "not registered" in entries[1004]["error"]
    assert entries[1005]["result"] == "0" and "no reply" in entries[1005]["error"]
    assert entries[1006]["result"] == "0" and "not-a-mac" in entries[1006]["error"]
    assert entries[1007]["result"] == "1"
    assert entries[1007]["macinfo"][0]["interface"] == "renamed0"

    pair = posts["/operations/pair"]["body"]
    assert pair["operationid"] == 1
    assert sorted(pair["snArray"], key=str) == [1001, 1007, "B-2"]
    assert posts["/notifications/devicescan"]["body"] == {
        "id": "1",
        "status": "3 devices passed scanning",
    }
    assert all(p["key"].startswith("scan-1-") for p in posts.values())

    keys = [k for k, _ in events]
    assert keys[0] == "scan.started.1"
    assert keys[-1] == "scan.finished.1"
    assert sorted(k for k in keys if k.startswith("scan.device.1.")) == sorted(
        f"scan.device.1.{sn}" for sn in (1001, "B-2", 1003, 1004, 1006, 1007)
    )
    assert events[-1][1]["data"]["passed"] == 3


async def test_all_answered_finishes_before_the_quiet_timeout(
    tmp_path: Path, mes_sim: Any, kit: SimpleNamespace
) -> None:
    devices = [
        kit.SimDevice(f"u-{i}", i, [("eth0", f"00:00:00:00:00:{i:02x}")]) for i in range(1, 6)
    ]
    async with mes_sim(kit.profile_for(devices)) as (_, base):
        db = f"sqlite+aiosqlite:///{tmp_path / 'hw.db'}"
        async with kit.controller(db, "memory://", base, quiet=60.0) as ctl:
            fleet = kit.SimFleet(ctl.bus, devices)
            await fleet.start()
            scan = await ctl.scans.start([{"uuid": d.uuid, "sn": d.sn} for d in devices])
            async with asyncio.timeout(10):
                while True:
                    async with ctl.store.tx(readonly=True) as tx:
                        record = await tx.scans.get(scan.operationid)
                    if record is not None and record.state != "running":
                        break
                    await asyncio.sleep(0.02)
    assert record.state == "complete"
    assert record.document is not None
    assert [e["result"] for e in record.document["scaninfo"]] == ["1"] * 5


async def test_bad_replies_fail_only_their_device(
    tmp_path: Path, mes_sim: Any, kit: SimpleNamespace
) -> None:
    D = kit.SimDevice

    def no_sn(op: int) -> bytes:
        return msgspec.json.encode({"operationid": op, "uuid": "u-nosn", "macinfo": []})

    def huge(op: int) -> bytes:
        pad = "x" * (5 * MIB)
        return msgspec.json.encode({"operationid": op, "uuid": "u-huge", "sn": 3, "pad": pad})

    devices = [
        D("u-good", 1, [("eth0", "00:00:00:00:00:01")]),
        D("u-nosn", 2, [], reply=no_sn),
        D("u-huge", 3, [], reply=huge),
        D("u-badmac", 4, [("eth0", "00:00:00:00:00:zz")]),
    ]
    async with mes_sim(kit.profile_for(devices)) as (_, base):
        db = f"sqlite+aiosqlite:///{tmp_path / 'hw.db'}"
        async with kit.controller(db, "memory://", base, quiet=30.0) as ctl:
            fleet = kit.SimFleet(ctl.bus, devices)
            await fleet.start()
            # Garbage and an unknown operationid go to the dead-letter queue, not into a scan.
            await ctl.bus.send("hwinfo_queue", b"not json at all")
            await ctl.bus.send("hwinfo_queue", {"operationid": 999, "sn": 1, "uuid": "x"})
            scan = await ctl.scans.start([{"uuid": d.uuid, "sn": d.sn} for d in devices])
            async with asyncio.timeout(10):
                while True:
                    async with ctl.store.tx(readonly=True) as tx:
                        record = await tx.scans.get(scan.operationid)
                        results = {
                            r.device_uuid: r for r in await tx.scans.results(scan.operationid)
                        }
                    if record is not None and record.state != "running":
                        break
                    await asyncio.sleep(0.02)
            assert ctl.bus.dead_lettered == 2
    assert record.state == "complete"
    assert results["u-good"].result == "1"
    assert "missing required field `sn`" in (results["u-nosn"].error or "")
    assert "exceeds the 1048576-byte limit" in (results["u-huge"].error or "")
    assert "is not a MAC address" in (results["u-badmac"].error or "")
    entries = by_sn(record.document or {})
    assert entries[1]["result"] == "1"
    # The no-sn device is reported under the sn the controller expected for its uuid.
    assert entries[2]["result"] == "0" and "sn" in entries[2]["error"]
    assert entries[3]["result"] == "0" and entries[4]["result"] == "0"


async def test_mes_answering_html_fails_the_scan_with_a_clear_error(
    tmp_path: Path, mes_sim: Any, kit: SimpleNamespace
) -> None:
    import httpx

    devices = [kit.SimDevice("u-1", 1, [("eth0", "00:00:00:00:00:01")])]
    async with mes_sim(kit.profile_for(devices)) as (_, base):
        async with httpx.AsyncClient() as http:
            await http.post(f"{base}/_faults", json={"garbage": "html"})
        db = f"sqlite+aiosqlite:///{tmp_path / 'hw.db'}"
        async with kit.controller(db, "memory://", base, quiet=30.0) as ctl:
            fleet = kit.SimFleet(ctl.bus, devices)
            await fleet.start()
            scan = await ctl.scans.start([{"uuid": "u-1", "sn": 1}])

            async def delivered() -> bool:
                return len((await kit.received(base))["posts"]) == 2  # no Pair: nobody passed

            await kit.eventually(delivered)
            async with ctl.store.tx(readonly=True) as tx:
                record = await tx.scans.get(scan.operationid)
            got = await kit.received(base)
    assert record is not None and record.state == "failed"
    assert "answered HTML" in (record.error or "")
    posts = {p["path"]: p["body"] for p in got["posts"]}
    assert "/operations/pair" not in posts
    status = posts["/notifications/devicescan"]["status"]
    assert status.startswith("internal error: MES GET ")
    assert "answered HTML" in status and "0 devices passed scanning" in status
    entry = posts["/log/deviceScan"]["scaninfo"][0]
    assert entry["result"] == "0" and "answered HTML" in entry["error"]
    assert entry["macinfo"] == [
        {"interface": "eth0", "macaddr": "00:00:00:00:00:01", "scanstatus": "0"}
    ]
