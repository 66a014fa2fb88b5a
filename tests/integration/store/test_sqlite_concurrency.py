"""SQLite under concurrency: many coroutines, and two engines on one file, never hit SQLITE_BUSY."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

from hwfleet.store import Store, open_store


async def _read_then_write(store: Store, i: int, at: datetime) -> None:
    # Read first, write second: a deferred SQLite transaction would fail here with
    # "database is locked" when another writer committed in between.
    async with store.tx() as tx:
        count = await tx.config.get("counter")
        await asyncio.sleep(0)  # let the other coroutines interleave (not synchronisation)
        await tx.config.set("counter", (count or 0) + 1, at + timedelta(seconds=i))


async def test_many_coroutines_read_then_write_without_losing_updates(
    tmp_path: Path, now: datetime
) -> None:
    store = await open_store(str(tmp_path / "c.db"))
    try:
        await asyncio.gather(*(_read_then_write(store, i, now) for i in range(40)))
        async with store.tx(readonly=True) as tx:
            assert await tx.config.get("counter") == 40  # no lost update
    finally:
        await store.close()


async def test_two_engines_on_one_file_claim_disjoint_outbox_rows(
    tmp_path: Path, now: datetime
) -> None:
    path = str(tmp_path / "two.db")
    a, b = await asyncio.gather(open_store(path), open_store(path))
    try:
        async with a.tx() as tx:
            for i in range(30):
                await tx.outbox.add(
                    kind="k", url="u", body={"i": i}, idempotency_key=f"k{i}", at=now
                )

        async def drain(store: Store, worker: str) -> list[int]:
            got: list[int] = []
            while True:
                async with store.tx() as tx:
                    rows = await tx.outbox.claim(worker=worker, limit=3, lease=60, now=now)
                if not rows:
                    return got
                got.extend(r.id for r in rows)

        ids_a, ids_b = await asyncio.gather(drain(a, "a"), drain(b, "b"))
        assert not set(ids_a) & set(ids_b)
        assert len(ids_a) + len(ids_b) == 30
    finally:
        await a.close()
        await b.close()
