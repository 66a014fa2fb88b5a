"""The coalescer: questions asked together are answered by one lookup; a failure reaches
every question of its batch and not the next; one asker's cancellation leaves the others."""

from __future__ import annotations

import asyncio

import pytest

from hwfleet.store.coalesce import Coalescer


class Lookup:
    """Answers ``key * 10`` for the keys it is given; can be held open or made to fail."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.fail: Exception | None = None

    async def __call__(self, keys: list[int]) -> dict[int, int]:
        self.calls.append(keys)
        self.started.set()
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return {k: k * 10 for k in keys if k >= 0}


async def test_questions_asked_together_share_one_lookup() -> None:
    lookup = Lookup()
    coalescer = Coalescer(lookup, batch=2, name="test")
    asks = [asyncio.create_task(coalescer.ask(k)) for k in (1, 2, 2, 3, -1)]
    # Every ask registers before the worker's first lookup starts (tasks run in order).
    await lookup.started.wait()
    lookup.release.set()
    assert await asyncio.gather(*asks) == [10, 20, 20, 30, None]
    # Four distinct keys in batches of two: two lookups, not five.
    assert lookup.calls == [[1, 2], [3, -1]] and coalescer.lookups == 2
    await coalescer.close()


async def test_a_failure_reaches_its_whole_batch_and_not_the_next() -> None:
    lookup = Lookup()
    coalescer = Coalescer(lookup, batch=10, name="test")
    lookup.fail = RuntimeError("database gone")
    asks = [asyncio.create_task(coalescer.ask(k)) for k in (1, 2)]
    await lookup.started.wait()
    lookup.release.set()
    for ask in asks:
        with pytest.raises(RuntimeError, match="database gone"):
            await ask
    lookup.fail = None
    assert await coalescer.ask(4) == 40
    await coalescer.close()


async def test_one_askers_cancellation_leaves_the_shared_answer() -> None:
    lookup = Lookup()
    coalescer = Coalescer(lookup, batch=10, name="test")
    first = asyncio.create_task(coalescer.ask(5))
    second = asyncio.create_task(coalescer.ask(5))
    await lookup.started.wait()
    first.cancel()
    lookup.release.set()
    assert await second == 50
    assert first.cancelled()
    await coalescer.close()
