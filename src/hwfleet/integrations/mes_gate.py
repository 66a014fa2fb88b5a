"""While the MES is failing, one lookup probes it and the others wait for the verdict.

A scan asks the MES about every device at once. When the MES is down, each
lookup retrying on its own schedule would keep thousands of connection
attempts a second going for the whole retry window (``mes_retry_for``,
minutes): the controller's CPU would go to knocking on a closed door instead
of consuming replies. So the first lookup that fails becomes the prober and
retries with its backoff; the others wait until the MES answers (then all go
at once), the prober gives up (then one of them probes), or their own
deadline passes. While the MES answers, a lookup passes the gate at the cost
of one flag test.
"""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger(__name__)


class OutageGate:
    """One per MES client; a lookup identifies itself with any unique object (its token)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._up = True
        self._prober: object | None = None
        self._changed = asyncio.Event()
        #: The last failure, for lookups that give up while another one probed:
        #: ``(reason, summary)`` as :class:`~hwfleet.integrations.mes.MesError` words them.
        self.last_failure = ("unreachable", "was unreachable")

    def _bind(self) -> None:
        # An event belongs to the loop that first waits on it: a client reused on another
        # loop (tests do) starts with a fresh gate.
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._up, self._prober = loop, True, None
            self._changed = asyncio.Event()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def probing(self, token: object) -> bool:
        return self._prober is token

    async def turn(self, token: object, deadline: float) -> bool:
        """Wait until this lookup may try; False if ``deadline`` (monotonic) passed first."""
        if self._up and self._loop is asyncio.get_running_loop():
            return True
        self._bind()
        while not self._up:
            if self._prober is None or self._prober is token:
                self._prober = token
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            changed = self._changed
            try:
                async with asyncio.timeout(remaining):
                    await changed.wait()
            except TimeoutError:
                return False
        return True

    def answered(self, token: object) -> None:
        """The MES answered (whatever it said): everyone may go."""
        self._bind()
        if self._prober is token:
            self._prober = None
        if not self._up:
            self._up = True
            self._notify()
            log.info("the MES answers again; waiting lookups go ahead")

    def failed(self, token: object, reason: str, summary: str) -> None:
        """A try failed in a way a retry can cure; the first such lookup becomes the prober."""
        self._bind()
        self.last_failure = (reason, summary)
        if self._up:  # once per outage: each device's own failure is logged if it gives up
            log.info("MES lookups failing (%s); one probes, the others wait", reason)
        self._up = False
        if self._prober is None:
            self._prober = token

    def leave(self, token: object) -> None:
        """The lookup is over (answered or gave up): if it was probing, another one takes over."""
        if self._prober is token:
            self._prober = None
            self._notify()
