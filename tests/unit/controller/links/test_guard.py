"""Limits on unidentified agent-port links: counting, line limits, pacing, the upgrade."""

from __future__ import annotations

import asyncio

import pytest

from hwfleet.controller import heap
from hwfleet.controller.links.agent_methods import AgentContext
from hwfleet.controller.links.guard import (
    AnonymousGuard,
    AnonymousLimits,
    Comebacks,
    LinkPacing,
    LinkReader,
)
from hwfleet.protocol.framing import MAX_LINE, STREAM_LIMIT
from hwfleet.trust.enroll_batch import retry_after


def ctx(cert_uuid: str | None = None) -> AgentContext:
    context = AgentContext(ipaddr="10.0.0.1", transport="stream", drop=lambda: None)
    context.cert_uuid = cert_uuid
    return context


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.read_high: int | None = None

    def set_read_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.read_high = high


def pacing(guard: AnonymousGuard, context: AgentContext, source: str = "10.0.0.1") -> LinkPacing:
    reader = LinkReader(limit=STREAM_LIMIT)
    return LinkPacing(guard, context, reader, source, Transport())


async def test_links_are_counted_per_source_and_in_all() -> None:
    guard = AnonymousGuard(AnonymousLimits(per_source=2, total=3))
    first, second = pacing(guard, ctx()), pacing(guard, ctx())
    assert first.anonymous and second.anonymous and guard.open_links == 2
    third = pacing(guard, ctx())
    assert not third.anonymous
    assert third.refusal is not None
    assert "from 10.0.0.1 (limit 2, anonymous_links_per_source)" in third.refusal
    other = pacing(guard, ctx(), "10.0.0.2")
    assert other.anonymous and guard.open_links == 3
    last = pacing(guard, ctx(), "10.0.0.3")
    assert last.refusal is not None and "(limit 3, anonymous_links)" in last.refusal
    # A link with a certificate from our CA is no anonymous link: it is not counted.
    device = pacing(guard, ctx(cert_uuid="u-1"))
    assert device.refusal is None and not device.anonymous
    first.ended()
    first.ended()  # once only
    assert guard.open_links == 2
    assert pacing(guard, ctx()).anonymous
    guard.close()


async def test_line_limits_small_until_identified_then_the_protocol_limit() -> None:
    guard = AnonymousGuard(AnonymousLimits(line_limit=8192))
    context = ctx()
    link = pacing(guard, context)
    assert link.line_limit() == 8192
    transport = Transport()
    LinkPacing(guard, ctx(), LinkReader(limit=STREAM_LIMIT), "10.0.0.9", transport)
    assert transport.read_high == 8192
    assert pacing(guard, ctx(cert_uuid="u-1")).line_limit() == MAX_LINE
    # --insecure: the handshake names the device; from the next line on it is one.
    context.uuid = "u-2"
    assert link.line_limit() == MAX_LINE and not link.anonymous
    await link.before_line()  # and it is not paced any more
    assert guard.open_links == 1  # only the 10.0.0.9 link is still anonymous
    guard.close()


async def test_lines_are_paced_per_source() -> None:
    guard = AnonymousGuard(AnonymousLimits(message_rate=20.0, message_burst=3))
    link, sibling = pacing(guard, ctx()), pacing(guard, ctx())
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(3):
        await link.before_line()  # the burst: no wait
    assert loop.time() - started < 0.04
    # Over budget, and the source's other link queues behind: 1/20 s apart.
    await asyncio.gather(link.before_line(), sibling.before_line())
    assert loop.time() - started >= 0.09
    assert guard.messages.reserve("10.0.0.7") == 0  # another source is not held back
    guard.close()


def test_refused_links_are_lined_up_at_the_rate_links_finish() -> None:
    now = [100.0]
    comebacks = Comebacks(slots=10, clock=lambda: now[0])
    # Before anything has finished: every slot once a second, the first waits the minimum.
    waits = [comebacks.retry_after() for _ in range(40)]
    assert waits[0] == 1.0 and waits == sorted(waits)
    assert waits[-1] == pytest.approx(4.0)  # the 40th of a line served at 10 a second
    # Links finish 4 a second (slower than assumed): later refusals wait longer per place.
    for _ in range(4):
        comebacks.finished()
    now[0] += 1.0
    comebacks.finished()
    assert 4.0 < comebacks.rate < 10.0
    now[0] += 60.0  # the line has been served meanwhile
    assert comebacks.retry_after() == 1.0
    # Never later than the cap, never slower than every slot in SLOWEST_LINK seconds.
    for _ in range(1000):
        last = comebacks.retry_after()
    assert last == Comebacks.MAX_WAIT
    assert comebacks.rate >= 10 / Comebacks.SLOWEST_LINK


async def test_refusals_for_lack_of_slots_name_the_wait_and_are_summed_up() -> None:
    guard = AnonymousGuard(AnonymousLimits(per_source=1, total=1))
    assert pacing(guard, ctx()).anonymous
    same_source = pacing(guard, ctx())
    # A per-source refusal is logged link by link, as before.
    assert same_source.refusal is not None and not same_source.summed_up
    full = [pacing(guard, ctx(), f"10.0.1.{i}") for i in range(30)]
    refusals = [link.refusal or "" for link in full]
    assert all(link.summed_up for link in full)
    assert refusals[0].endswith("busy, retry after 1 s")
    # Thirty in line behind one slot: the last is sent further out than the first.
    assert (retry_after(refusals[-1]) or 0) > 1
    guard.close()


async def test_a_link_whose_knock_reserved_a_slot_is_not_admitted_twice() -> None:
    guard = AnonymousGuard(AnonymousLimits(per_source=4, total=1))
    assert guard.admit("10.0.0.1") is None  # what the listener did when the link knocked
    link = LinkPacing(
        guard, ctx(), LinkReader(limit=STREAM_LIMIT), "10.0.0.1", Transport(), reserved=True
    )
    assert link.anonymous and link.refusal is None and guard.open_links == 1
    link.ended()
    assert guard.open_links == 0
    # Knocked, then presented a certificate of our CA: no anonymous link, the slot returns.
    assert guard.admit("10.0.0.1") is None
    device = LinkPacing(
        guard,
        ctx(cert_uuid="u-1"),
        LinkReader(limit=STREAM_LIMIT),
        "10.0.0.1",
        Transport(),
        reserved=True,
    )
    assert not device.anonymous and guard.open_links == 0
    guard.close()


async def test_while_tenuring_the_end_of_a_devices_link_schedules_a_full_collection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    guard = AnonymousGuard(AnonymousLimits())
    collections: list[None] = []
    monkeypatch.setattr(guard, "ended", lambda: collections.append(None))
    pacing(guard, ctx(cert_uuid="u-1")).ended()
    assert collections == []  # a device's link is freed by reference counting, as ever
    heap.start_tenuring()
    try:
        # Tenured, its reference cycles wait for the full collection (heap.collect_all).
        pacing(guard, ctx(cert_uuid="u-2")).ended()
    finally:
        heap.stop_tenuring()
    assert collections == [None]
    guard.close()
