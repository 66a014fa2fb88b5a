"""Pollers' batched paths on both engines: claiming ahead, many results in one statement."""

from __future__ import annotations

from datetime import datetime

from tests.integration.store.conftest import later

from hwfleet.oob.worker import spread
from hwfleet.store import Store
from hwfleet.store.bmcs import BmcRepository
from hwfleet.store.pollers import PollerRepository


async def test_claim_ahead_then_write_many(store: Store, now: datetime) -> None:
    async with store.tx() as tx:
        repo = PollerRepository(tx.conn)
        a = await repo.ensure("n-a", "chassis", 15.0, now, [])
        b = await repo.ensure("n-b", "chassis", 15.0, later(now, 1.5), [])
        c = await repo.ensure("n-c", "chassis", 15.0, later(now, 5), [])
        await BmcRepository(tx.conn).put("n-a", "redfish", b"sealed-a", now)
    async with store.tx() as tx:
        claimed = await PollerRepository(tx.conn).claim(
            worker="w1", limit=10, lease=60, now=now, until=later(now, 2)
        )
        bmcs = await BmcRepository(tx.conn).get_many(r.node for r in claimed)
    # Due now and due within the horizon; not the one due later.
    assert [r.id for r in claimed] == [a.id, b.id]
    assert set(bmcs) == {"n-a"} and bmcs["n-a"].sealed == b"sealed-a"
    async with store.tx() as tx:  # leased: another worker gets nothing
        other = await PollerRepository(tx.conn).claim(
            worker="w2", limit=10, lease=60, now=now, until=later(now, 2)
        )
    assert other == []
    at = later(now, 3)
    async with store.tx() as tx:
        repo = PollerRepository(tx.conn)
        await repo.succeeded_many(
            worker="w1",
            results=[
                (a.id, {"power": "on"}, later(now, 15), at),
                (b.id, [{"name": "CPU", "value": 41.5}], later(now, 16.5), at),
                (c.id, {"power": "off"}, later(now, 20), at),  # not w1's lease: ignored
            ],
        )
        await repo.succeeded_many(worker="w1", results=[])
    async with store.tx(readonly=True) as tx:
        rows = {r.id: r for r in await PollerRepository(tx.conn).list()}
    assert rows[a.id].last_data == {"power": "on"} and rows[a.id].next_run_at == later(now, 15)
    assert rows[b.id].last_data == [{"name": "CPU", "value": 41.5}]
    assert rows[b.id].lease_owner is None and rows[b.id].last_polled_at == at
    assert rows[c.id].last_data is None and rows[c.id].next_run_at == later(now, 5)


def test_spread_puts_late_pollers_apart() -> None:
    delays = sorted(spread(i, 15.0) for i in range(1, 501))
    assert delays[0] >= 7.5 and delays[-1] < 22.5
    # Evenly over the interval: no second holds more than a few times its share.
    per_second = [sum(1 for d in delays if s <= d < s + 1) for s in range(7, 23)]
    assert max(per_second) <= 3 * 500 / 15
