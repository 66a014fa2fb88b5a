"""tx.devices: upserts keep first_seen and the serial's JSON type; presence; inventories."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import hwfleet.store.devices as devices_module
from hwfleet.store import DeviceRecord, Store


async def _add(
    store: Store, uuid: str, at: datetime, *, serial: int | str = 1001, name: str = "dev"
) -> DeviceRecord:
    async with store.tx() as tx:
        return await tx.devices.upsert(
            uuid,
            serial=serial,
            name=name,
            model_id="burnin-x1",
            version="1.0",
            macs=["52:54:00:00:00:01", "52:54:00:00:00:02"],
            ipaddr="127.1.0.1",
            st_id=0,
            transport="stream",
            online=True,
            at=at,
        )


async def test_upsert_inserts_then_updates_keeping_first_seen(store: Store, now: datetime) -> None:
    first = await _add(store, "u-1", now, name="before")
    assert first.state == "online"
    assert first.first_seen == now and first.last_seen == now
    assert first.macs == ["52:54:00:00:00:01", "52:54:00:00:00:02"]

    later = now + timedelta(minutes=5)
    async with store.tx() as tx:
        second = await tx.devices.upsert(
            "u-1",
            serial=1001,
            name="after",
            model_id="burnin-x2",
            version="2.0",
            macs=["52:54:00:00:00:03"],
            ipaddr="127.1.0.9",
            st_id=16,
            transport="amqp",
            online=False,
            at=later,
        )
    assert second.first_seen == now
    assert second.last_seen == later
    assert (second.name, second.model_id, second.version) == ("after", "burnin-x2", "2.0")
    assert (second.ipaddr, second.st_id, second.transport) == ("127.1.0.9", 16, "amqp")
    assert second.macs == ["52:54:00:00:00:03"]
    assert second.state == "offline"
    async with store.tx(readonly=True) as tx:
        assert await tx.devices.get("u-1") == second
        assert len(await tx.devices.list()) == 1


@pytest.mark.parametrize("serial", [1001, "1001", "SN-00042", 2**40])
async def test_serial_keeps_its_json_type(store: Store, now: datetime, serial: int | str) -> None:
    await _add(store, "u-serial", now, serial=serial)
    async with store.tx() as tx:
        got = await tx.devices.get("u-serial")
    assert got is not None
    assert got.serial == serial
    assert type(got.serial) is type(serial)


async def test_serial_of_another_type_is_refused(store: Store, now: datetime) -> None:
    with pytest.raises(TypeError, match="serial must be an int or a str"):
        await _add(store, "u-bad", now, serial=True)
    with pytest.raises(TypeError, match="serial must be an int or a str"):
        await _add(store, "u-bad", now, serial=1.5)  # type: ignore[arg-type]


async def test_times_come_back_aware_utc_and_naive_times_are_refused(
    store: Store, now: datetime
) -> None:
    plus_two = timezone(timedelta(hours=2))
    record = await _add(store, "u-tz", now.astimezone(plus_two))
    assert record.first_seen == now
    assert record.first_seen.utcoffset() == timedelta(0)
    with pytest.raises(Exception, match="naive datetime"):
        await _add(store, "u-naive", now.replace(tzinfo=None))


async def test_list_is_ordered_by_name_then_uuid(store: Store, now: datetime) -> None:
    await _add(store, "u-c", now, name="beta")
    await _add(store, "u-b", now, name="alpha")
    await _add(store, "u-a", now, name="beta")
    async with store.tx() as tx:
        listed = [d.uuid for d in await tx.devices.list()]
    assert listed == ["u-b", "u-a", "u-c"]


async def test_presence_status_and_rename(store: Store, now: datetime) -> None:
    await _add(store, "u-1", now)
    await _add(store, "u-2", now)
    await _add(store, "u-3", now)
    beat = now + timedelta(seconds=30)
    async with store.tx() as tx:
        await tx.devices.touch(dict.fromkeys(["u-1", "u-2", "u-1", "unknown"], beat))
        await tx.devices.set_status("u-3", -2)
        await tx.devices.rename("u-3", "renamed")
    async with store.tx() as tx:
        got = {d.uuid: d for d in await tx.devices.list()}
    assert got["u-1"].last_seen == beat and got["u-2"].last_seen == beat
    assert got["u-3"].last_seen == now
    assert got["u-3"].st_id == -2 and got["u-3"].name == "renamed"

    gone = now + timedelta(minutes=1)
    async with store.tx() as tx:
        await tx.devices.set_online("u-1", False, gone)
        assert await tx.devices.mark_all_offline() == 2  # u-2 and u-3; u-1 already off
        assert await tx.devices.mark_all_offline() == 0
    async with store.tx() as tx:
        states = {d.uuid: (d.state, d.last_seen) for d in await tx.devices.list()}
    assert states["u-1"] == ("offline", beat)  # going offline keeps the last contact

    back = now + timedelta(minutes=2)
    async with store.tx() as tx:
        await tx.devices.set_online("u-1", True, back)
        again = await tx.devices.get("u-1")
    assert again is not None and (again.state, again.last_seen) == ("online", back)


async def test_touch_many_devices_in_bulk(
    store: Store, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(devices_module, "TOUCH_CHUNK", 4)  # cross chunk boundaries cheaply
    uuids = [f"u-{i:05d}" for i in range(11)]
    async with store.tx() as tx:
        for uuid in uuids:
            await tx.devices.upsert(
                uuid,
                serial=uuid,
                name=uuid,
                model_id="m",
                version="1",
                macs=[],
                ipaddr="127.0.0.1",
                st_id=0,
                transport="stream",
                online=True,
                at=now,
            )
    beat = now + timedelta(seconds=15)
    async with store.tx() as tx:
        await tx.devices.touch(dict.fromkeys(uuids[1:], beat))
    async with store.tx() as tx:
        seen = {d.uuid: d.last_seen for d in await tx.devices.list()}
    assert seen.pop(uuids[0]) == now
    assert set(seen.values()) == {beat}


async def test_inventory_round_trip_and_replace(store: Store, now: datetime) -> None:
    await _add(store, "u-inv", now)
    inventory = {"pci": [{"address": "0000:04:00.0", "vendor": "0x8086"}], "memory_mb": 16384}
    async with store.tx() as tx:
        assert await tx.devices.get_inventory("u-inv") is None
        await tx.devices.set_inventory("u-inv", inventory, now)
    async with store.tx() as tx:
        assert await tx.devices.get_inventory("u-inv") == inventory
        await tx.devices.set_inventory("u-inv", {"memory_mb": 1}, now + timedelta(seconds=1))
    async with store.tx() as tx:
        assert await tx.devices.get_inventory("u-inv") == {"memory_mb": 1}


async def test_inventory_of_unknown_device_fails_without_breaking_the_tx(
    store: Store, now: datetime
) -> None:
    async with store.tx() as tx:
        with pytest.raises(LookupError, match="no device 'ghost'"):
            await tx.devices.set_inventory("ghost", {"x": 1}, now)
        # The transaction is still usable (PostgreSQL would refuse after a failed statement).
        await tx.events.add("device.ghost", {}, at=now)
    async with store.tx() as tx:
        assert len(await tx.events.list()) == 1


async def test_liveness_rule_in_the_store(store: Store, now: datetime) -> None:
    """Heartbeats only move last_seen forward; expiry, revival and disconnect each report
    exactly the devices whose state they changed."""
    for uuid in ("u-1", "u-2", "u-3"):
        await _add(store, uuid, now)
    late = now + timedelta(seconds=10)
    async with store.tx() as tx:
        # u-2's beat is older than what is stored (another replica recorded a newer one).
        assert await tx.devices.touch({"u-1": late, "u-2": now - timedelta(seconds=5)}) == []
        stale_before = now + timedelta(seconds=5)
        assert sorted(await tx.devices.expire(stale_before)) == ["u-2", "u-3"]
        assert await tx.devices.expire(stale_before) == []  # nothing changes twice
        assert await tx.devices.online(stale_before) == [("u-1", 1001)]
        # A heartbeat brings a device back, once.
        assert await tx.devices.touch({"u-2": late}) == ["u-2"]
        assert await tx.devices.touch({"u-2": late}) == []
        # Disconnecting loses to a newer record (the device reconnected elsewhere).
        assert not await tx.devices.disconnect("u-1", now)
        assert await tx.devices.disconnect("u-1", late)
        assert not await tx.devices.disconnect("u-1", late)  # already offline
    async with store.tx() as tx:
        shown = {d.uuid: d.state for d in await tx.devices.list(stale_before=late)}
        # u-2 is marked online but silent since before `later`: listed offline.
        listed_later = await tx.devices.list(stale_before=late + timedelta(seconds=1))
    assert shown == {"u-1": "offline", "u-2": "online", "u-3": "offline"}
    assert {d.uuid: d.state for d in listed_later}["u-2"] == "offline"
