"""Tenuring in ``hwfleet server``: full collections skip the long-lived heap (issue 18)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from hwfleet.controller import heap


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


@pytest.fixture
def tenuring() -> Iterator[None]:
    heap.start_tenuring()
    try:
        yield
    finally:
        heap.stop_tenuring()
    assert gc.get_freeze_count() == 0  # everything is back where CPython collects it


def test_without_tenuring_collect_all_is_a_full_collection() -> None:
    node = Node()
    ref = weakref.ref(node)
    del node
    assert heap.collect_all() >= 1
    assert ref() is None and gc.get_freeze_count() == 0


@pytest.mark.usefixtures("tenuring")
def test_survivors_of_a_full_collection_are_tenured_until_collect_all() -> None:
    node = Node()
    ref = weakref.ref(node)
    gc.collect()  # as CPython's automatic full collections: it survives, so it is tenured
    assert gc.get_freeze_count() > 0
    del node
    gc.collect()  # tenured: not scanned, not freed
    assert ref() is not None
    assert heap.collect_all() >= 1  # everything reconsidered
    assert ref() is None
    assert gc.get_freeze_count() > 0  # and the survivors tenured again


@pytest.mark.usefixtures("tenuring")
async def test_tenured_garbage_is_freed_by_the_periodic_full_collection() -> None:
    """No link closing for hours must not mean tenured cycles stay for hours."""
    node = Node()
    freed = asyncio.Event()
    ref = weakref.ref(node, lambda _: freed.set())
    gc.collect()
    del node
    gc.collect()
    assert ref() is not None  # tenured
    collecting = asyncio.create_task(heap.collect_periodically(0.01))
    try:
        async with asyncio.timeout(10):
            await freed.wait()
    finally:
        collecting.cancel()
    assert gc.get_freeze_count() > 0  # the survivors tenured again
