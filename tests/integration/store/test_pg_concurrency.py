"""Replica-safety on real PostgreSQL: two Store instances (two engines, two pools) racing.

These are the guarantees that let several controllers share one database:
outbox rows are never claimed twice, a scan finishes exactly once, a reply is
recorded once, an idempotency key queues one post, a token enrolls once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from hwfleet.store import ScanResultRow, Store, open_store

pytestmark = pytest.mark.postgres


@pytest.fixture
async def replicas(pg_url: str) -> AsyncIterator[tuple[Store, Store]]:
    a, b = await asyncio.gather(open_store(pg_url), open_store(pg_url))
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def _lock_waiters(store: Store) -> int:
    async with store.engine.connect() as conn:
        result = await conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
        return int(result.scalar_one())


async def _until_blocked(store: Store, deadline: float) -> None:
    """Wait until another session is blocked on a row lock (state owned by the server)."""
    async with asyncio.timeout(deadline):
        while True:
            if await _lock_waiters(store) > 0:
                return
            await asyncio.sleep(0.01)


async def _queue(store: Store, n: int, at: datetime) -> list[int]:
    async with store.tx() as tx:
        return [
            (
                await tx.outbox.add(
                    kind="k", url="u", body={"i": i}, idempotency_key=f"k{i}", at=at
                )
            ).id
            for i in range(n)
        ]


async def test_a_claim_skips_rows_another_replica_holds_without_waiting(
    replicas: tuple[Store, Store], now: datetime, deadline: float
) -> None:
    a, b = replicas
    ids = await _queue(a, 6, now)
    async with a.tx() as tx_a:
        held = await tx_a.outbox.claim(worker="a", limit=3, lease=60, now=now)
        # a has not committed: its rows are locked, not yet visibly leased. b must skip
        # them at once (SKIP LOCKED) rather than wait for a or take the same rows.
        async with asyncio.timeout(deadline), b.tx() as tx_b:
            taken = await tx_b.outbox.claim(worker="b", limit=10, lease=60, now=now)
    assert [r.id for r in held] == ids[:3]
    assert [r.id for r in taken] == ids[3:]
    async with b.tx() as tx:
        assert await tx.outbox.claim(worker="b", limit=10, lease=60, now=now) == []


async def test_replicas_draining_the_outbox_together_never_share_a_row(
    replicas: tuple[Store, Store], now: datetime
) -> None:
    a, b = replicas
    ids = await _queue(a, 60, now)

    async def drain(store: Store, worker: str) -> list[int]:
        got: list[int] = []
        while True:
            async with store.tx() as tx:
                rows = await tx.outbox.claim(worker=worker, limit=4, lease=60, now=now)
            if not rows:
                return got
            got.extend(r.id for r in rows)

    results = await asyncio.gather(drain(a, "a1"), drain(b, "b1"), drain(a, "a2"), drain(b, "b2"))
    claimed = [i for got in results for i in got]
    assert len(claimed) == len(set(claimed))  # nobody got a row twice
    assert sorted(claimed) == sorted(ids)  # and every row was claimed
    async with a.tx() as tx:
        rows = await tx.outbox.list(limit=100)
    assert {r.attempts for r in rows} == {1}


async def test_finish_waits_for_the_other_replica_and_then_loses(
    replicas: tuple[Store, Store], now: datetime, deadline: float
) -> None:
    a, b = replicas
    async with a.tx() as tx:
        op = (await tx.scans.create(expected=[], quiet_timeout=1, at=now)).operationid

    async def finish_in_b() -> bool:
        async with b.tx() as tx:
            return await tx.scans.finish(op, state="failed", document={}, error="timeout", at=now)

    async with a.tx() as tx_a:
        assert await tx_a.scans.finish(
            op, state="complete", document={"operationid": op}, error=None, at=now
        )
        contender = asyncio.create_task(finish_in_b())
        await _until_blocked(a, deadline)  # b is waiting for a's row lock
    async with asyncio.timeout(deadline):
        assert await contender is False
    async with b.tx() as tx:
        scan = await tx.scans.get(op)
    assert scan is not None and (scan.state, scan.document) == ("complete", {"operationid": op})


async def test_racing_finishes_have_exactly_one_winner(
    replicas: tuple[Store, Store], now: datetime
) -> None:
    a, b = replicas
    async with a.tx() as tx:
        ops = [
            (await tx.scans.create(expected=[], quiet_timeout=1, at=now)).operationid
            for _ in range(15)
        ]

    async def finish(store: Store, op: int, who: str) -> bool:
        async with store.tx() as tx:
            return await tx.scans.finish(
                op, state="complete", document={"by": who}, error=None, at=now
            )

    for op in ops:
        won = await asyncio.gather(finish(a, op, "a"), finish(b, op, "b"))
        assert sorted(won) == [False, True], f"scan {op}: {won}"
    async with a.tx() as tx:
        assert await tx.scans.running() == []


async def test_the_same_reply_recorded_by_two_replicas_counts_once(
    replicas: tuple[Store, Store], now: datetime
) -> None:
    a, b = replicas
    async with a.tx() as tx:
        op = (await tx.scans.create(expected=[], quiet_timeout=1, at=now)).operationid

    async def record(store: Store, device: str, result: str) -> bool:
        row = ScanResultRow(op, device, 1001, {}, {}, result, None)
        async with store.tx() as tx:
            return await tx.scans.add_results([row], at=now) == [row]

    for i in range(10):
        device = f"u-{i}"
        outcomes = await asyncio.gather(record(a, device, "1"), record(b, device, "0"))
        assert sorted(outcomes) == [False, True]
    assert await record(a, "u-0", "1") is False
    async with b.tx() as tx:
        assert len(await tx.scans.results(op)) == 10


async def test_one_idempotency_key_queues_one_row(
    replicas: tuple[Store, Store], now: datetime
) -> None:
    a, b = replicas

    async def add(store: Store, body: dict[str, int]) -> int:
        async with store.tx() as tx:
            row = await tx.outbox.add(
                kind="mes.pair", url="u", body=body, idempotency_key="pair-7", at=now
            )
            return row.id

    ids = await asyncio.gather(
        add(a, {"n": 1}), add(b, {"n": 2}), add(a, {"n": 3}), add(b, {"n": 4})
    )
    assert len(set(ids)) == 1
    async with a.tx() as tx:
        rows = await tx.outbox.list()
    assert [r.id for r in rows] == [ids[0]]


async def test_a_token_enrolls_once_across_replicas(
    replicas: tuple[Store, Store], now: datetime
) -> None:
    a, b = replicas
    async with a.tx() as tx:
        await tx.tokens.add("h", expires_at=now + timedelta(hours=1), at=now)

    async def consume(store: Store) -> bool:
        async with store.tx() as tx:
            return await tx.tokens.consume("h", now)

    outcomes = await asyncio.gather(consume(a), consume(b), consume(a), consume(b))
    assert sorted(outcomes) == [False, False, False, True]


async def test_replicas_expiring_together_report_each_device_once(
    replicas: tuple[Store, Store], now: datetime
) -> None:
    """Every replica sweeps; each offline transition (and so its event) has one owner."""
    a, b = replicas
    uuids = [f"u-{i:03d}" for i in range(200)]
    async with a.tx() as tx:
        for uuid in uuids:
            await tx.devices.upsert(
                uuid,
                serial=uuid,
                name=uuid,
                model_id="m",
                version="1",
                macs=[],
                ipaddr="",
                st_id=0,
                transport="amqp",
                online=True,
                at=now,
            )

    async def expire(store: Store) -> list[str]:
        async with store.tx() as tx:
            return await tx.devices.expire(now + timedelta(seconds=1))

    results = await asyncio.gather(expire(a), expire(b), expire(a), expire(b))
    expired = [uuid for got in results for uuid in got]
    assert sorted(expired) == uuids  # every device once, none twice
