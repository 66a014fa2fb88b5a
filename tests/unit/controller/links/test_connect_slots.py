"""Connecting slots (issue 18's reconnect storm): a bounded number of links in TLS and
``handshake`` at once, the newest waiting link next, and links whose peer gave up closed
without a TLS handshake."""

from __future__ import annotations

import asyncio
import select
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from hwfleet.controller.links.connecting import ConnectSlots, Slot, peer_still_there
from hwfleet.controller.links.guard import AnonymousGuard, AnonymousLimits
from hwfleet.controller.links.listener import KnockListener
from hwfleet.trust import CertificateAuthority, first_contact_context, server_context


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def alive() -> bool:
    return True


def gone() -> bool:
    return False


async def test_no_more_than_the_limit_are_held_and_a_freed_slot_goes_to_a_waiter() -> None:
    slots = ConnectSlots(limit=2)
    first = await slots.acquire("10.0.0.1", alive)
    second = await slots.acquire("10.0.0.1", alive)
    assert isinstance(first, Slot) and isinstance(second, Slot) and slots.held == 2
    third = asyncio.ensure_future(slots.acquire("10.0.0.1", alive))
    await asyncio.sleep(0)  # let it queue (one loop turn, nothing timed)
    assert not third.done() and slots.waiting == 1
    first.release()
    first.release()  # twice is once: the slot is not counted back two times
    assert isinstance(await third, Slot)
    assert slots.held == 2 and slots.waiting == 0


async def test_the_newest_waiter_goes_first() -> None:
    # The oldest waiting link is the one whose agent is about to give up: a TLS handshake
    # spent on it is likely lost. The newest one's agent still waits long enough.
    clock = Clock()
    slots = ConnectSlots(limit=1, clock=clock)
    held = await slots.acquire("10.0.0.1", alive)
    assert held is not None
    order: list[str] = []

    async def wait(name: str) -> None:
        slot = await slots.acquire("10.0.0.1", alive)
        assert slot is not None
        order.append(name)
        slot.release()

    old = asyncio.ensure_future(wait("old"))
    await asyncio.sleep(0)
    clock.now += 1
    new = asyncio.ensure_future(wait("new"))
    await asyncio.sleep(0)
    held.release()
    await asyncio.gather(old, new)
    assert order == ["new", "old"]


async def test_a_waiter_whose_peer_hung_up_is_dropped_without_taking_the_slot() -> None:
    slots = ConnectSlots(limit=1)
    held = await slots.acquire("10.0.0.1", alive)
    assert held is not None
    living = asyncio.ensure_future(slots.acquire("10.0.0.1", alive))
    await asyncio.sleep(0)
    dead = asyncio.ensure_future(slots.acquire("10.0.0.2", gone))  # newest: looked at first
    await asyncio.sleep(0)
    held.release()
    assert await dead is None
    assert isinstance(await living, Slot)
    assert slots.abandoned == 1 and slots.held == 1


async def test_a_waiter_past_max_wait_is_dropped() -> None:
    clock = Clock()
    slots = ConnectSlots(limit=1, max_wait=10.0, clock=clock)
    held = await slots.acquire("10.0.0.1", alive)
    assert held is not None
    stale = asyncio.ensure_future(slots.acquire("10.0.0.1", alive))
    await asyncio.sleep(0)
    clock.now += 11
    fresh = asyncio.ensure_future(
        slots.acquire("10.0.0.1", alive)
    )  # arriving expires the stale one
    await asyncio.sleep(0)
    assert await stale is None and slots.abandoned == 1
    held.release()
    assert isinstance(await fresh, Slot)


async def test_a_cancelled_waiter_gives_its_slot_back() -> None:
    slots = ConnectSlots(limit=1)
    held = await slots.acquire("10.0.0.1", alive)
    assert held is not None
    waiter = asyncio.ensure_future(slots.acquire("10.0.0.1", alive))
    await asyncio.sleep(0)
    held.release()  # the slot is handed to the waiter ...
    waiter.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert slots.held == 0
    assert await slots.acquire("10.0.0.1", alive) is not None


async def test_one_source_cannot_take_every_slot() -> None:
    # Links that never finish their TLS handshake, all from one address, would otherwise
    # hold every slot the fleet's reconnects wait for.
    slots = ConnectSlots(limit=4, per_source=2)
    first = await slots.acquire("10.6.6.6", alive)
    second = await slots.acquire("10.6.6.6", alive)
    assert first is not None and second is not None
    assert await slots.acquire("10.6.6.6", alive) is None and slots.refused == 1
    assert await slots.acquire("10.0.0.1", alive) is not None  # another device: served
    first.release()
    assert await slots.acquire("10.6.6.6", alive) is not None  # its count went down


def test_peer_still_there_sees_the_peer_close() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname(), timeout=5)
        conn, _ = server.accept()
        with conn:
            client.sendall(b"\x16\x03\x01")  # a ClientHello's first bytes, left unread
            assert peer_still_there(conn)
            client.close()
            # Waits for the FIN itself (POLLRDHUP), the ClientHello still unread.
            hangup = select.poll()
            hangup.register(conn, select.POLLRDHUP)
            assert hangup.poll(5000), "no FIN within 5 s"
            assert conn.recv(3, socket.MSG_PEEK) == b"\x16\x03\x01"
            assert not peer_still_there(conn)


def test_at_least_one_slot() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ConnectSlots(limit=0)


class Recording(ConnectSlots):
    """Real slots that say when a link starts waiting, and keep each waiter's liveness check."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit=limit, max_wait=30.0)
        self.queued = asyncio.Event()
        self.checks: list[Callable[[], bool]] = []

    async def acquire(self, source: str, alive: Callable[[], bool]) -> Slot | None:
        if self.held >= self.limit:
            self.checks.append(alive)
            self.queued.set()
        return await super().acquire(source, alive)


class Holder(asyncio.Protocol):
    """A TLS link that stays unidentified, holding its slot until the test frees it."""

    def __init__(self, slots: list[Slot | None]) -> None:
        self._slots = slots
        self.slot: Slot | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._slots.append(self.slot)


async def _queued(slots: Recording) -> None:
    await asyncio.wait_for(slots.queued.wait(), 5)
    slots.queued.clear()


async def test_a_storm_of_tls_links_is_served_a_slot_at_a_time_newest_first(
    tmp_path: Path,
) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path / "ca")
    tls = server_context(ca, ca.issue_server_cert(["127.0.0.1"]))
    slots = Recording(limit=1)
    made: list[Slot | None] = []

    def factory(reserved: bool, slot: Slot | None) -> asyncio.Protocol:
        holder = Holder(made)
        holder.slot = slot
        return holder

    guard = AnonymousGuard(AnonymousLimits())
    listener = KnockListener(
        "127.0.0.1",
        0,
        tls,
        guard,
        factory,
        handshake_timeout=30.0,
        shutdown_timeout=1.0,
        connecting=slots,
    )
    await listener.start()
    port = listener.sockets[0].getsockname()[1]
    client = first_contact_context(None)
    try:
        _, first = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=client), 5)
        assert len(made) == 1 and made[0] is not None  # TLS done, the only slot held
        waiting = asyncio.ensure_future(asyncio.open_connection("127.0.0.1", port, ssl=client))
        await _queued(slots)
        # An agent that gave up: its ClientHello sent, then its socket closed.
        quitter = socket.create_connection(("127.0.0.1", port))
        quitter.sendall(b"\x16\x03\x01\x00\x05hello")
        await _queued(slots)
        quitter.close()
        deadline = asyncio.get_running_loop().time() + 5
        while slots.checks[-1]():  # the controller's side sees the FIN (bounded)
            assert asyncio.get_running_loop().time() < deadline, "the FIN never arrived"
            await asyncio.sleep(0.01)
        assert not waiting.done() and len(made) == 1  # no TLS while the slot is taken
        made[0].release()  # the first link identified itself
        _, second = await asyncio.wait_for(waiting, 5)
        # The newest waiter was looked at first, found gone and closed without TLS; the
        # slot went to the link still waiting.
        assert slots.abandoned == 1 and len(made) == 2 and slots.held == 1
        first.close()
        second.close()
    finally:
        await listener.close()
        guard.close()
