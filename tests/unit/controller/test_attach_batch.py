"""Devices arriving together are recorded in one commit, each caller after its own row."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from tests.counting_store import CountingStore

from hwfleet.bus import open_bus
from hwfleet.controller.attach_batch import AttachWriter
from hwfleet.controller.events import EventPublisher, utcnow
from hwfleet.protocol.methods import Handshake
from hwfleet.store import Store


@contextlib.asynccontextmanager
async def writer_on(store: Store) -> AsyncIterator[tuple[AttachWriter, CountingStore]]:
    bus = open_bus("memory://")
    await bus.start()
    counting = CountingStore(store)
    writer = AttachWriter(counting, EventPublisher(store, bus))  # type: ignore[arg-type]
    try:
        yield writer, counting
    finally:
        await writer.close()
        await bus.close()


def handshake(n: int) -> Handshake:
    return Handshake(uuid=f"00000000-0000-4000-8000-{n:012d}", serial=n, name=f"d{n}")


async def test_a_storm_of_arrivals_takes_few_commits_and_records_each(store: Store) -> None:
    async with writer_on(store) as (writer, counting):
        arrivals = [handshake(n) for n in range(50)]
        await asyncio.gather(
            *(writer.record(hs.uuid, hs, "127.0.0.1", "stream", utcnow()) for hs in arrivals)
        )
        # The first arrival starts a commit alone; the 49 that came meanwhile share the next.
        assert counting.writes <= 2
    async with store.tx(readonly=True) as tx:
        rows = {d.uuid: d for d in await tx.devices.list()}
        events = await tx.events.list(pattern="device.online.#", limit=100)
    assert all(rows[hs.uuid].state == "online" for hs in arrivals)
    assert sorted(e.device_uuid or "" for e in events) == sorted(hs.uuid for hs in arrivals)


async def test_one_bad_row_does_not_refuse_the_others(store: Store) -> None:
    async with writer_on(store) as (writer, _):
        good = handshake(1)
        # A float serial: the store refuses it (a decoded handshake could not carry one).
        bad = Handshake(uuid="00000000-0000-4000-8000-000000000002", serial=1.5)  # type: ignore[arg-type]
        results = await asyncio.gather(
            writer.record(good.uuid, good, "127.0.0.1", "stream", utcnow()),
            writer.record(bad.uuid, bad, "127.0.0.1", "stream", utcnow()),
            return_exceptions=True,
        )
    assert results[0] is None
    assert isinstance(results[1], RuntimeError)
    async with store.tx(readonly=True) as tx:
        assert (await tx.devices.get(good.uuid)) is not None
        assert (await tx.devices.get(bad.uuid)) is None
