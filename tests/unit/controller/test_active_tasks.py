"""Arriving devices' active tasks: asked together, one query, each device its own answer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from tests.counting_store import CountingStore

from hwfleet.controller.active_tasks import ActiveTasks
from hwfleet.store import Store


async def test_questions_asked_together_cost_one_query_and_answer_each_device(
    store: Store,
) -> None:
    now = datetime.now(UTC)
    async with store.tx() as tx:
        await tx.tasks.create("t-a1", "u-a", "decom.disk_erase", {}, now)
        await tx.tasks.create("t-a2", "u-a", "decom.disk_erase", {}, now)
        await tx.tasks.create("t-b1", "u-b", "decom.disk_erase", {}, now)
        await tx.tasks.create("t-b2", "u-b", "decom.disk_erase", {}, now)
        await tx.tasks.update("t-b2", state="complete", at=now)  # not active
    counting = CountingStore(store)
    active = ActiveTasks(counting)  # type: ignore[arg-type]
    a, b, c, a_again = await asyncio.gather(
        active.of("u-a"), active.of("u-b"), active.of("u-c"), active.of("u-a")
    )
    assert sorted(t.id for t in a) == ["t-a1", "t-a2"] == sorted(t.id for t in a_again)
    assert [t.id for t in b] == ["t-b1"]
    assert c == []
    assert counting.reads == 1 and active.queries == 1
    # Nothing is remembered: a later question reads the store again.
    async with store.tx() as tx:
        await tx.tasks.update("t-a1", state="error", at=now)
    assert [t.id for t in await active.of("u-a")] == ["t-a2"]
    assert counting.reads == 2
    await active.close()


async def test_a_failed_lookup_reaches_every_caller_of_the_batch(store: Store) -> None:
    class Broken:
        def tx(self, **kw: Any) -> Any:
            raise RuntimeError("database gone")

    active = ActiveTasks(Broken())  # type: ignore[arg-type]
    results = await asyncio.gather(active.of("u-a"), active.of("u-b"), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    await active.close()
