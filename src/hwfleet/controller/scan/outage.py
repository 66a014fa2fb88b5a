"""A database outage during a scan: wait it out, and give up only past a bound.

DESIGN §2: the database is the truth. A reply whose result cannot be stored
because the database is unreachable (PostgreSQL refusing connections, a
SQLite disk that is full) has said nothing wrong about its device: it stays
unacknowledged and its write is retried with capped backoff until the store
is back. While the store is out, no scan is finished for being quiet (the
replies are not silent, they are waiting), and the quiet timer counts again
from the moment the store answers.

If the store stays out longer than ``scan_store_outage`` seconds, the scans
whose replies are waiting end in an internal error once it is back: the
notification says the database was unavailable, and the devices whose replies
could not be recorded carry that error, never "no reply to the scan". The
waiting replies are then acknowledged (the scan's outcome no longer depends on
them; a controller restarted in between resumes the scan and asks again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from hwfleet.integrations.mes import jitter
from hwfleet.store.errors import describe_unavailable

log = logging.getLogger(__name__)


class StoreOutage:
    """Whether the scan's database work is failing, since when, and until what bound."""

    def __init__(
        self,
        limit: float,
        clock: Callable[[], datetime],
        *,
        backoff: float = 0.1,
        backoff_cap: float = 2.0,
    ) -> None:
        self.limit = limit
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self._clock = clock
        self._since: float | None = None
        self._back = asyncio.Event()
        #: The driver's words for the last failure ("connection refused", "disk is full").
        self.reason = ""
        #: When the store last came back (the quiet timer counts from here).
        self.ended_at: datetime | None = None
        #: Failed attempts since the outage began (tests and operators watch it).
        self.failures = 0
        #: Set while an outage lasts, and once one has ended a scan (tests wait on them).
        self.began = asyncio.Event()
        self.gave_up = asyncio.Event()

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException) -> None:
        """A store call failed for want of the store (see ``is_unavailable``)."""
        self.reason = describe_unavailable(exc)
        self.failures += 1
        if self._since is None:
            self._since = asyncio.get_running_loop().time()
            self._back.clear()
            self.began.set()
            log.warning(
                "scan: the database is unavailable (%s); replies wait for it (up to %g s)",
                self.reason,
                self.limit,
            )

    def recovered(self) -> None:
        """A store call succeeded: the outage, if any, is over."""
        if self._since is None:
            return
        lasted = asyncio.get_running_loop().time() - self._since
        self._since = None
        self.failures = 0
        self.ended_at = self._clock()
        self._back.set()
        self.began.clear()
        log.warning("scan: the database is back after %.1f s", lasted)

    def exceeded(self) -> bool:
        """The outage has lasted longer than the bound."""
        since = self._since
        return since is not None and asyncio.get_running_loop().time() - since >= self.limit

    def give_up(self) -> str:
        """The outage outlasted the bound: the internal error the waiting scans end with."""
        self.gave_up.set()
        return (
            f"the database was unavailable for more than {self.limit:g} s ({self.reason}), "
            "so this scan's replies could not be recorded"
        )

    async def pause(self, attempt: int) -> None:
        """Wait before retry ``attempt`` (capped, jittered); cut short when the store is back."""
        delay = jitter(min(self.backoff_cap, self.backoff * 2 ** min(attempt, 30)))
        if self._since is not None:
            delay = min(delay, self.limit)
        try:
            async with asyncio.timeout(delay):
                await self._back.wait()
        except TimeoutError:
            pass
