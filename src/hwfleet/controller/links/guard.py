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
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from hwfleet.controller import heap
from hwfleet.controller.links.agent_methods import AgentContext
from hwfleet.protocol.framing import STREAM_LIMIT
from hwfleet.settings import ServerSettings
from hwfleet.trust.ratelimit import RateLimiter, source_key

log = logging.getLogger(__name__)


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
    total: int = 512
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

    In ``hwfleet server`` the survivors of full collections are tenured
    (:mod:`hwfleet.controller.heap`): a device's link that closes is then freed
    by this collection too, so any link's end schedules it there.
    """

    DELAY = 5.0
    #: Runs at most this often: a full collection of a controller holding thousands of links
    #: costs tenths of a second, and in an enrollment storm links end all the time.
    SPACING = 15.0
    #: During a storm links close all the time: collect at least this often, not every
    #: DELAY (a full collection of a 1,000-device controller's heap took a quarter of its
    #: CPU while that fleet enrolled, bench/graphs.py under py-spy).
    MAX_WAIT = 60.0

    def __init__(self) -> None:
        self._pending: asyncio.TimerHandle | None = None
        self._first: float | None = None
        self._trim: Callable[[int], int] | None = None
        self._loaded = False
        self._last = -math.inf

    def soon(self) -> None:
        """A link closed: run DELAY after the last one, or MAX_WAIT after the first, and
        never within SPACING of the previous run."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._first is None:
            self._first = now
        when = max(min(now + self.DELAY, self._first + self.MAX_WAIT), self._last + self.SPACING)
        if self._pending is not None:
            if self._pending.when() >= when:
                return
            self._pending.cancel()
        self._pending = loop.call_at(max(when, now), self._run)

    def _run(self) -> None:
        self._pending = None
        self._first = None
        self._last = asyncio.get_running_loop().time()
        heap.collect_all()
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


class Comebacks:
    """When to tell a link refused for lack of anonymous slots to come back (issue 18).

    A rack of a thousand new devices found 128 slots (512 now). Told "retry after 1 s", the
    other 872 came back every second, each with a fresh TLS handshake, and the
    handshakes of the refused — most of the controller's CPU — starved the
    enrollments that would have freed the slots. So refusals are lined up in a
    virtual queue served at the rate anonymous links have been finishing: the
    n-th refused link is told to come back in about n / rate seconds (the agent
    adds its jitter), so most devices are refused once instead of dozens of times.
    """

    #: Longest wait ever named, seconds.
    MAX_WAIT = 30.0
    #: The rate is never taken as lower than every slot finishing in this many seconds: a
    #: slow first second of a storm (every device's handshake at once) must not send the
    #: rest a minute away while the controller idles.
    SLOWEST_LINK = 10.0

    def __init__(self, slots: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        #: Links finishing per second: at first, every slot once a second.
        self.rate = float(slots)
        self._floor = slots / self.SLOWEST_LINK
        self._next = 0.0
        self._window = clock()
        self._finished = 0

    def finished(self) -> None:
        """An admitted anonymous link ended (enrolled, or gave up): a slot came free."""
        self._finished += 1
        now = self._clock()
        if now - self._window >= 1.0:
            measured = self._finished / (now - self._window)
            self.rate = max(self._floor, 0.5 * self.rate + 0.5 * measured)
            self._window, self._finished = now, 0

    def retry_after(self) -> float:
        """Seconds until this refused link's turn (at least 1)."""
        now = self._clock()
        self._next = max(self._next, now) + 1.0 / self.rate
        return min(self.MAX_WAIT, max(1.0, self._next - now))


class AnonymousGuard:
    """Counts anonymous links per source and paces the lines they send."""

    #: Refusals for lack of slots are summed up in one log line per this many seconds.
    REFUSALS_LOGGED_EVERY = 10.0

    def __init__(self, limits: AnonymousLimits) -> None:
        self.limits = limits
        self._open: Counter[str] = Counter()
        self.messages = RateLimiter(rate=limits.message_rate, burst=limits.message_burst)
        self._trimmer = HeapTrimmer()
        self.comebacks = Comebacks(limits.total)
        self._refused = 0
        self._refused_logged = 0.0
        #: The last refusal of :meth:`admit` is counted in a summary line (log no more).
        self.summed_up = False

    def close(self) -> None:
        self._trimmer.cancel()

    @property
    def open_links(self) -> int:
        return self._open.total()

    def admit(self, source: str) -> str | None:
        """Count a new anonymous link; the refusal to send instead when over a limit."""
        key = source_key(source)
        self.summed_up = False
        if self._open[key] >= self.limits.per_source:
            return (
                f"too many unauthenticated connections from {source} (limit "
                f"{self.limits.per_source}, anonymous_links_per_source): finish enrolling on "
                "an open one, or retry when one closes"
            )
        if self.open_links >= self.limits.total:
            wait = math.ceil(self.comebacks.retry_after())
            self._note_refused(wait)
            self.summed_up = True
            return (
                f"too many unauthenticated connections to this controller (limit "
                f"{self.limits.total}, anonymous_links): busy, retry after {wait} s"
            )
        self._open[key] += 1
        return None

    def _note_refused(self, wait: int) -> None:
        # One line per period, not one per refusal: in a storm the log lines alone were
        # thousands a minute.
        self._refused += 1
        now = time.monotonic()
        if now - self._refused_logged >= self.REFUSALS_LOGGED_EVERY:
            log.warning(
                "%d unauthenticated link(s) refused in the last %.0f s: all %d anonymous_links "
                "slots taken (enrollment storm?); told to come back in up to %d s",
                self._refused,
                min(now - self._refused_logged, self.REFUSALS_LOGGED_EVERY),
                self.limits.total,
                wait,
            )
            self._refused, self._refused_logged = 0, now

    def release(self, source: str) -> None:
        self.comebacks.finished()
        key = source_key(source)
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]

    def ended(self) -> None:
        """An unidentified link (admitted or refused), or any link while tenuring, has
        ended: its memory is to return."""
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
        *,
        reserved: bool = False,
    ) -> None:
        """``reserved``: the link's anonymous slot was taken when it knocked, before TLS
        (:class:`~hwfleet.controller.links.listener.KnockListener`)."""
        self._guard = guard
        self._ctx = ctx
        self._reader = reader
        self._source = source
        self.anonymous = False
        self.refusal: str | None = None
        self.summed_up = False
        if self._identified():
            if reserved:  # knocked, then presented a certificate after all: no anonymous link
                guard.release(source)
            reader.set_limit(STREAM_LIMIT)
        else:
            if not reserved:
                self.refusal = guard.admit(source)
                self.summed_up = guard.summed_up
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
        if was_anonymous or heap.tenuring():  # a tenured link's cycles wait for collect_all
            self._guard.ended()
