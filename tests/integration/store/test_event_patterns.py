"""tx.events filtered by an AMQP topic pattern before the page is cut, from either end."""

from __future__ import annotations

from datetime import datetime

import pytest

from hwfleet.bus.routing import topic_matches
from hwfleet.store import Store
from hwfleet.store.events import like_for_topic

KEYS = [
    "a",
    "a.b",
    "a.b.c",
    "a.x.c",
    "A.b",
    "a_b.c",
    "a%b.c",
    "axb.c",
    "device.online.u-1",
    "scan.device.7.1001",
]
PATTERNS = ["#", "*", "a", "a.#", "#.c", "a.*", "a.*.c", "a.#.c", "a_b.#", "a%b.*", "*.online.#"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_the_like_pattern_keeps_every_match(pattern: str) -> None:
    like = like_for_topic(pattern)
    for key in KEYS:
        if topic_matches(pattern, key) and like is not None:
            assert _like(like, key), (pattern, like, key)


def _like(like: str, key: str) -> bool:
    """SQL LIKE with escape backslash, case-sensitive (the stricter of the two engines)."""
    import re

    regex, escaped = "", False
    for char in like:
        if escaped:
            regex += re.escape(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            regex += ".*"
        elif char == "_":
            regex += "."
        else:
            regex += re.escape(char)
    return re.fullmatch(regex, key, re.DOTALL) is not None


@pytest.mark.parametrize("pattern", PATTERNS)
async def test_pattern_filters_exactly_on_both_engines(
    store: Store, now: datetime, pattern: str
) -> None:
    async with store.tx() as tx:
        for key in KEYS:
            await tx.events.add(key, {}, at=now)
    async with store.tx(readonly=True) as tx:
        got = [e.routing_key for e in await tx.events.list(pattern=pattern, limit=100)]
    assert got == [k for k in KEYS if topic_matches(pattern, k)]


async def test_a_page_is_cut_after_filtering_from_the_newest(store: Store, now: datetime) -> None:
    async with store.tx() as tx:
        for i in range(450):
            await tx.events.add(f"noise.{i}", {}, at=now)
            if i % 150 == 0:
                await tx.events.add(f"wanted.{i}", {}, at=now)
    async with store.tx(readonly=True) as tx:
        oldest = await tx.events.list(pattern="wanted.*", limit=2)
        newest = await tx.events.list(pattern="wanted.*", limit=2, newest_first=True)
        older = await tx.events.list(
            pattern="wanted.*", limit=2, newest_first=True, before_id=newest[-1].id
        )
        tail = await tx.events.list(pattern="noise.#", limit=1, newest_first=True)
    assert [e.routing_key for e in oldest] == ["wanted.0", "wanted.150"]
    assert [e.routing_key for e in newest] == ["wanted.300", "wanted.150"]
    assert [e.routing_key for e in older] == ["wanted.0"]
    assert [e.routing_key for e in tail] == ["noise.449"]
