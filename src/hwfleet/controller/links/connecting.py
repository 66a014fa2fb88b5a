"""How many certificate links the controller works on at once, and who goes next (issue 18).

After a controller restart every device reconnects within seconds: a TLS
handshake each (about a millisecond of CPU), then ``handshake``. The listener
used to start a TLS handshake on every connection the moment it was accepted,
so thousands progressed side by side, each at a thousandth of the CPU. On a
loaded machine none of them finished within the agents' connect timeout (10 s):
every agent gave up, its handshake was work for nothing, it came back with a
new one, and the heartbeats of the devices already back went unanswered behind
them — 1,319 of 10,000 devices back after 300 s (two CPU hogs beside it)
instead of all in 32 s.

Here at most ``limit`` links are between accept and ``handshake`` at once; the
rest wait, holding only a descriptor. Bounding the TLS handshakes alone is not
enough: with 256 slots given back after TLS, the ``handshake`` calls behind them
piled up unbounded and the same collapse came back. Under a storm the newest waiting link goes
next (its agent has the longest to wait still): the oldest ones are the ones
whose agents are about to give up, and serving them first would spend a TLS
handshake on a peer that hangs up before it finishes. A waiting link whose peer
has already hung up (the TCP state shows it) or that has waited longer than
``max_wait`` is closed without any TLS: it costs an accept and a close.

A source (IPv4 address, IPv6 /64: the caller's key) may have at most
``per_source`` links holding or waiting for a slot; more are closed at once.
A device reconnects with one link from its own address, so this only stops one
source from taking every slot with TLS handshakes it never finishes. A link
without a client certificate gives its slot back as soon as its TLS handshake
is done: from then on it is an anonymous link, limited by the anonymous guard.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: Links between accept and an answered ``handshake`` at once. Enough to keep the
#: batched key checks and arrival commits full (each batch takes whoever is waiting);
#: few enough that the TLS work ready in one turn of the event loop stays under about
#: a tenth of a second of CPU, so the replies, heartbeats and commits of the links
#: already through are not queued behind thousands of handshakes.
CONNECTING_LINKS = 128

#: ``tcpi_state`` of a connection both ends still hold open (linux/tcp_states.h).
_TCP_ESTABLISHED = 1


def peer_still_there(sock: socket.socket) -> bool:
    """False once the peer has closed or reset the connection (Linux ``TCP_INFO``).

    An agent that gave up closed its socket: the FIN (or RST) has arrived even
    though its ClientHello is still unread in ours. Where ``TCP_INFO`` is not
    available every link counts as alive.
    """
    if not hasattr(socket, "TCP_INFO"):
        return True
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)
    except OSError:
        return False  # closed under us
    return info[0] == _TCP_ESTABLISHED


class Slot:
    """One link's place among the connecting; :meth:`release` is idempotent."""

    __slots__ = ("_slots", "source")

    def __init__(self, slots: ConnectSlots, source: str) -> None:
        self._slots: ConnectSlots | None = slots
        self.source = source

    def release(self) -> None:
        slots, self._slots = self._slots, None
        if slots is not None:
            slots.freed(self.source)


@dataclass(slots=True)
class _Waiter:
    since: float
    source: str
    alive: Callable[[], bool]
    turn: asyncio.Future[Slot | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class ConnectSlots:
    """At most ``limit`` slots held; waiters served newest first, the given-up ones dropped."""

    def __init__(
        self,
        limit: int = CONNECTING_LINKS,
        max_wait: float = 15.0,
        per_source: int = 16,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1:
            raise ValueError("ConnectSlots needs at least one slot")
        self.limit = limit
        self.max_wait = max_wait
        self.per_source = per_source
        self._clock = clock
        #: Links holding or waiting for a slot, by source.
        self._sources: collections.Counter[str] = collections.Counter()
        self._held = 0
        #: Oldest first: new waiters are appended, served from the right, expired from the left.
        self._waiting: collections.deque[_Waiter] = collections.deque()
        #: Waiting links closed without TLS: their peer hung up, or they waited too long.
        self.abandoned = 0
        #: Links closed at once: their source already had ``per_source`` connecting.
        self.refused = 0

    @property
    def held(self) -> int:
        return self._held

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def acquire(self, source: str, alive: Callable[[], bool]) -> Slot | None:
        """A slot, or None when the link should be closed unserved (its peer gave up, or
        its source has ``per_source`` links connecting already)."""
        self._expire()
        if self._sources[source] >= self.per_source:
            self.refused += 1
            return None
        self._sources[source] += 1
        if self._held < self.limit and not self._waiting:
            self._held += 1
            return Slot(self, source)
        waiter = _Waiter(self._clock(), source, alive)
        self._waiting.append(waiter)
        try:
            return await waiter.turn
        except asyncio.CancelledError:
            turn = waiter.turn
            if turn.done() and not turn.cancelled() and (slot := turn.result()) is not None:
                slot.release()  # given a slot in the same loop turn as cancelled
            raise

    def freed(self, source: str) -> None:
        """A slot came back: give it to the newest waiter whose peer is still there."""
        self._held -= 1
        self._forget(source)
        self._expire()
        while self._held < self.limit and self._waiting:
            waiter = self._waiting.pop()
            if waiter.turn.done():  # cancelled while waiting
                self._forget(waiter.source)
                continue
            if not waiter.alive():
                self._drop(waiter)
                continue
            self._held += 1
            waiter.turn.set_result(Slot(self, waiter.source))

    def _expire(self) -> None:
        limit = self._clock() - self.max_wait
        while self._waiting and self._waiting[0].since < limit:
            self._drop(self._waiting.popleft())

    def _drop(self, waiter: _Waiter) -> None:
        self._forget(waiter.source)
        if not waiter.turn.done():
            self.abandoned += 1
            waiter.turn.set_result(None)

    def _forget(self, source: str) -> None:
        left = self._sources[source] - 1
        if left > 0:
            self._sources[source] = left
        else:
            del self._sources[source]

    def close(self) -> None:
        """Every waiter is told to close its link (the listener is shutting down)."""
        while self._waiting:
            waiter = self._waiting.pop()
            self._forget(waiter.source)
            if not waiter.turn.done():
                waiter.turn.set_result(None)
