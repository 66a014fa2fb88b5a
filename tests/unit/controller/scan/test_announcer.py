"""Scan events reach the bus in order, devices' before their scan's ``scan.finished``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

import msgspec

from hwfleet.bus import Delivery, open_bus
from hwfleet.controller.events import EventPublisher
from hwfleet.controller.scan.announcer import ScanAnnouncer
from hwfleet.store import EventRecord, Store

AT = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def record(event_id: int, key: str, **payload: Any) -> EventRecord:
    return EventRecord(id=event_id, at=AT, routing_key=key, device_uuid=None, payload=payload)


async def test_a_chunk_goes_out_in_order_with_finished_last() -> None:
    bus = open_bus("memory://")
    await bus.start()
    got: list[Delivery] = []
    done = asyncio.Event()

    async def inbox(delivery: Delivery) -> None:
        got.append(delivery)
        if len(got) == 5:
            done.set()

    try:
        await bus.subscribe("events", "scan.#", inbox)
        # The publisher only announces rows already recorded: it never touches the store.
        announcer = ScanAnnouncer(EventPublisher(cast(Store, None), bus))
        queued = [
            record(1, "scan.device.7.sn1", sn="sn1"),
            record(2, "scan.device.7.sn2", sn="sn2"),
            record(4, "scan.finished.7", passed=3),  # committed before sn3's row was queued
            record(3, "scan.device.7.sn3", sn="sn3"),
            record(5, "scan.refused.7", reason="not expected"),
        ]
        for event in queued:  # all queued before the loop runs: one chunk
            announcer.announce(event)
        announcer.start()
        async with asyncio.timeout(10):
            await done.wait()
        await announcer.close()
    finally:
        await bus.close()
    assert [d.routing_key for d in got] == [
        "scan.device.7.sn1",
        "scan.device.7.sn2",
        "scan.device.7.sn3",
        "scan.refused.7",
        "scan.finished.7",
    ]
    first = msgspec.json.decode(got[0].body)
    assert first == {
        "id": 1,
        "at": AT.isoformat(),
        "key": "scan.device.7.sn1",
        "data": {"sn": "sn1"},
    }
