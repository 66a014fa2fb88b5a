"""Limits on agent-port links that have not identified themselves (issue 21, High 3, Medium 4).

Anyone can open a TLS connection to the agent port. Until a link presents a
client certificate issued by the controller CA (or, under ``--insecure``,
until its ``handshake`` succeeds) it is *anonymous*, and these limits hold:

* at most ``anonymous_links_per_source`` open links per source (IPv4
  address, IPv6 /64) and ``anonymous_links`` in all; one more is told why
  and closed;
* a line of at most ``anonymous_line_limit`` bytes, so an unterminated line
  holds at most about twice that in the link's buffer before it is refused
  (an identified link may send the protocol's 1 MiB);
* ``anonymous_message_rate`` lines per second per source, ``…_burst`` at
  once; blank lines count. A source over its budget is not read from until
  the budget refills, so flooding costs the controller nothing but sleep.

Every link, identified or not, yields to the event loop after each line, so a
peer with many lines buffered cannot keep the API and the heartbeats of
other devices waiting (:func:`hwfleet.protocol.stream.pump`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from hwfleet.controller.links.agent_methods import AgentContext
from hwfleet.protocol.framing import STREAM_LIMIT
from hwfleet.settings import ServerSettings
from hwfleet.trust.ratelimit import RateLimiter, source_key


class LinkReader(asyncio.StreamReader):
    """A StreamReader whose line limit starts small and is raised once the peer is known.

    asyncio fixes the limit at construction (``_limit``, which also sets how
    much is buffered before reading pauses: twice the limit). Setting that
    attribute is the one way to change it for an open connection.
    """

    _limit: int
    _buffer: bytearray

    def set_limit(self, limit: int) -> None:
        self._limit = limit

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def buffered(self) -> int:
        """Bytes received and not yet consumed."""
        return len(self._buffer)


@dataclass(frozen=True, slots=True)
class AnonymousLimits:
    """The settings, validated by :class:`~hwfleet.settings.ServerSettings`."""

    per_source: int = 16
    total: int = 128
    line_limit: int = 64 * 1024
    message_rate: float = 5.0
    message_burst: int = 40

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> AnonymousLimits:
        return cls(
            per_source=settings.anonymous_links_per_source,
            total=settings.anonymous_links,
            line_limit=settings.anonymous_line_limit,
            message_rate=settings.anonymous_message_rate,
            message_burst=settings.anonymous_message_burst,
        )


class HeapTrimmer:
    """Gives the memory of closed anonymous links back to the system, a moment later.

    Each TLS link holds a few hundred KiB while data arrives (asyncio's read
    buffer, the TLS input, our line buffer). Two things kept that after a
    flood: a link that ends with an SSL error is a reference cycle (the
    error's traceback holds the transport), freed only by a full garbage
    collection; and glibc keeps freed heap for reuse. So, a few seconds
    after anonymous links close (once per quiet period, not per link), one
    full collection and ``malloc_trim`` (skipped where the C library has none).
    """

    DELAY = 5.0
    #: During a storm links close all the time: collect at least this often, not every
    #: DELAY (a full collection of a 1,000-device controller's heap took a quarter of its
    #: CPU while that fleet enrolled, bench/graphs.py under py-spy).
    MAX_WAIT = 60.0

    def __init__(self) -> None:
        self._pending: asyncio.TimerHandle | None = None
        self._first: float | None = None
        self._trim: Callable[[int], int] | None = None
        self._loaded = False

    def soon(self) -> None:
        """A link closed: run DELAY after the last one, or MAX_WAIT after the first."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._first is None:
            self._first = now
        when = min(now + self.DELAY, self._first + self.MAX_WAIT)
        if self._pending is not None:
            if self._pending.when() >= when:
                return
            self._pending.cancel()
        self._pending = loop.call_at(max(when, now), self._run)

    def _run(self) -> None:
        self._pending = None
        self._first = None
        gc.collect()
        if not self._loaded:
            self._loaded = True
            with contextlib.suppress(OSError, AttributeError):
                self._trim = ctypes.CDLL(None).malloc_trim
        if self._trim is not None:
            self._trim(0)

    def cancel(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self._first = None


class AnonymousGuard:
    """Counts anonymous links per source and paces the lines they send."""

    def __init__(self, limits: AnonymousLimits) -> None:
        self.limits = limits
        self._open: Counter[str] = Counter()
        self.messages = RateLimiter(rate=limits.message_rate, burst=limits.message_burst)
        self._trimmer = HeapTrimmer()

    def close(self) -> None:
        self._trimmer.cancel()

    @property
    def open_links(self) -> int:
        return self._open.total()

    def admit(self, source: str) -> str | None:
        """Count a new anonymous link; the refusal to send instead when over a limit."""
        key = source_key(source)
        if self._open[key] >= self.limits.per_source:
            return (
                f"too many unauthenticated connections from {source} (limit "
                f"{self.limits.per_source}, anonymous_links_per_source): finish enrolling on "
                "an open one, or retry when one closes"
            )
        if self.open_links >= self.limits.total:
            return (
                f"too many unauthenticated connections to this controller (limit "
                f"{self.limits.total}, anonymous_links): busy, retry after 1 s"
            )
        self._open[key] += 1
        return None

    def release(self, source: str) -> None:
        key = source_key(source)
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]

    def ended(self) -> None:
        """An unidentified link (admitted or refused) has ended: its memory is to return."""
        self._trimmer.soon()

    async def pace(self, source: str) -> None:
        """Take one line from the source's budget, waiting while it is empty."""
        wait = self.messages.reserve(source)
        if wait > 0:
            await asyncio.sleep(wait)  # rate limiting: the link is not read meanwhile


class LinkPacing:
    """One link's view of the guard, for :func:`~hwfleet.protocol.stream.pump`."""

    def __init__(
        self,
        guard: AnonymousGuard,
        ctx: AgentContext,
        reader: LinkReader,
        source: str,
        transport: asyncio.BaseTransport,
    ) -> None:
        self._guard = guard
        self._ctx = ctx
        self._reader = reader
        self._source = source
        self.anonymous = False
        self.refusal: str | None = None
        if self._identified():
            reader.set_limit(STREAM_LIMIT)
        else:
            self.refusal = guard.admit(source)
            self.anonymous = self.refusal is None
            reader.set_limit(guard.limits.line_limit + 1)
            # TLS input waiting to be decrypted: no more than a line's worth either.
            # (The TLS transport has this; typeshed declares it only for write buffers.)
            set_limits = getattr(transport, "set_read_buffer_limits", None)
            if set_limits is not None:
                set_limits(high=guard.limits.line_limit)

    def _identified(self) -> bool:
        return self._ctx.cert_uuid is not None or self._ctx.uuid is not None

    def line_limit(self) -> int:
        if self.anonymous and self._identified():
            # A handshake succeeded (``--insecure``): a device link from its next line on.
            self.close()
            self._reader.set_limit(STREAM_LIMIT)
        return self._reader.limit - 1  # the reader's limit counts the newline too

    async def before_line(self) -> None:
        if self.anonymous:
            await self._guard.pace(self._source)

    def close(self) -> None:
        """Give the link's anonymous slot back (once)."""
        if self.anonymous:
            self.anonymous = False
            self._guard.release(self._source)

    def ended(self) -> None:
        """The link is closed."""
        was_anonymous = self.anonymous or self.refusal is not None
        self.close()
        if was_anonymous:
            self._guard.ended()
