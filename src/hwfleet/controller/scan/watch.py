"""Per-scan state and the watcher that finishes scans (all answered, or quiet for too long).

The store is the truth; :class:`ScanState` is this replica's cache of it: who
is expected, who has a stored result, how many lookups are in flight here.
The watcher sweeps ``tx.scans.running()`` every ``tick``:

* a scan whose expected devices all have results finishes now. Each replica
  knows its own writes at once; another replica's are read from the store
  once the scan's ``last_activity`` has stopped moving (one re-read per quiet
  spell, not one per reply).
* a scan quiet for its ``quiet_timeout`` finishes with the missing devices
  marked as not replying — unless a lookup or a write is still in flight here
  (a MES retrying is not silence), or the database is unavailable; the quiet
  timer restarts when the database is back.
* a scan whose replies waited on the database for longer than
  ``scan_store_outage`` finishes in an internal error once the database is back
  (:mod:`hwfleet.controller.scan.outage`).

A restarted controller resumes: the scans running when it starts get their
quiet timer restarted (the replies the broker redelivers must be read before
anyone is declared silent) and the scan command broadcast again — at once and
once more half a quiet timeout later, for agents that reconnect slowly. (Stream
agents are not connected yet when a restarted controller resumes: the scan
bridge sends each of them its unanswered scans when it attaches.)
Devices that already have a result are skipped without a MES lookup.

The trigger is sent again for a running scan that still waits for devices
(devices answer a repeated operationid once; the stream bridge forwards it only
to agents without a result):

* after the bus reconnects — a broker restart loses every device's exclusive
  queue and the trigger waiting in it — at once and then 1, 2, 4 … s later (at
  most a third of the quiet timeout apart), as the devices reconnect at their own
  pace; the reconnect also restarts the quiet timer, and no scan is declared
  quiet while the bus is down: a broker away is not silence;
* when a scan has been quiet for a third of its quiet timeout, and every third
  after that, before the missing devices are given up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from hwfleet.controller.scan.identity import serial_key
from hwfleet.store.errors import is_unavailable
from hwfleet.types import Serial

if TYPE_CHECKING:
    from hwfleet.bus.base import Bus
    from hwfleet.controller.scan.outage import StoreOutage
    from hwfleet.store import ScanRecord, Store

log = logging.getLogger(__name__)

#: Finished scans remembered (so their late replies are dropped without a query).
_KEEP_FINISHED = 256


@dataclass(slots=True, eq=False)
class ScanState:
    operationid: int
    quiet_timeout: float
    expected: dict[str, Serial | None] = field(default_factory=dict)
    #: serial_key(serial) → uuid of every enrolled device (identity.py's rules).
    agent_serials: dict[str, str] = field(default_factory=dict)
    answered: set[str] = field(default_factory=set)
    running: bool = True
    inflight: int = 0
    seen_activity: datetime | None = None
    synced_activity: datetime | None = None
    #: Set when a database outage outlasted its bound: the scan ends in this internal error.
    store_failure: str | None = None
    #: When (loop time) to send the trigger again, and the gap to the time after that.
    resend_at: float | None = None
    resend_gap: float = 1.0

    def complete(self) -> bool:
        return bool(self.expected) and self.expected.keys() <= self.answered

    def resend_cap(self) -> float:
        return max(1.0, self.quiet_timeout / 3)


def state_of(
    scan: ScanRecord, answered: Iterable[str], agent_serials: Iterable[tuple[str, Serial]] = ()
) -> ScanState:
    expected = {str(d["uuid"]): d.get("sn") for d in scan.expected if d.get("uuid")}
    return ScanState(
        operationid=scan.operationid,
        quiet_timeout=scan.quiet_timeout,
        expected=expected,
        agent_serials={serial_key(sn): uuid for uuid, sn in agent_serials},
        answered=set(answered),
        running=scan.state == "running",
        seen_activity=scan.last_activity,
        synced_activity=scan.last_activity,
    )


class ScanDriver(Protocol):
    """What the watcher asks of the scan service: resend a trigger, finish a scan."""

    @property
    def writes_waiting(self) -> bool:
        """The result writer is retrying a batch the store refused."""
        ...

    async def broadcast(self, operationid: int) -> None: ...

    async def finish(
        self, operationid: int, reason: str, *, unrecorded: str | None = None
    ) -> object: ...


class ScanWatcher:
    """Caches scan states and finishes scans on time.

    Its collaborators are given, not reached through the service: the store it
    reads, the bus whose reconnects it watches, the clock, the database outage it
    reports to, and the ``driver`` that broadcasts and finishes.
    """

    def __init__(
        self,
        *,
        store: Store,
        bus: Bus,
        clock: Callable[[], datetime],
        outage: StoreOutage,
        driver: ScanDriver,
        tick: float = 0.2,
    ) -> None:
        self._store = store
        self._bus = bus
        self._clock = clock
        self._outage = outage
        self._driver = driver
        self.tick = tick
        self._states: dict[int, ScanState] = {}
        self._loading: dict[int, asyncio.Future[ScanState | None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._serving_since: datetime | None = None
        #: The bus's reconnect count last seen, and when it last changed.
        self._reconnects = 0
        self._reconnected_at: datetime | None = None

    async def start(self) -> None:
        self._serving_since = self._clock()
        self._reconnects = _reconnects(self._bus)
        await self._resume()
        self._task = asyncio.create_task(self._loop(), name="scan watcher")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def cached(self, operationid: int) -> ScanState | None:
        return self._states.get(operationid)

    def unanswered(self, uuid: str) -> list[int]:
        """The running scans (known here) that expect ``uuid`` and have no result from it."""
        return [
            op
            for op, state in self._states.items()
            if state.running and uuid in state.expected and uuid not in state.answered
        ]

    def adopt(
        self,
        scan: ScanRecord,
        answered: Iterable[str],
        agent_serials: Iterable[tuple[str, Serial]] = (),
    ) -> ScanState:
        state = self._states[scan.operationid] = state_of(scan, answered, agent_serials)
        return state

    def forget(self, operationid: int) -> None:
        """The scan finished (here or elsewhere): drop its late replies from now on."""
        state = self._states.get(operationid)
        if state is not None:
            state.running = False
        finished = [op for op, s in self._states.items() if not s.running]
        for op in finished[: max(0, len(finished) - _KEEP_FINISHED)]:
            del self._states[op]

    async def state(self, operationid: int) -> ScanState | None:
        """This replica's state for a scan (loaded once from the store); None if unknown."""
        state = self._states.get(operationid)
        if state is not None:
            return state
        loading = self._loading.get(operationid)
        if loading is None:
            # One load per scan however many replies arrive for it at once.
            loading = self._loading[operationid] = asyncio.ensure_future(self._load(operationid))
            loading.add_done_callback(lambda _: self._loading.pop(operationid, None))
        return await asyncio.shield(loading)

    async def _load(self, operationid: int) -> ScanState | None:
        async with self._store.tx(readonly=True) as tx:
            scan = await tx.scans.get(operationid)
            if scan is None:
                return None
            answered = await tx.scans.answered(operationid)
            agents = await tx.devices.agent_serials()
        return self.adopt(scan, answered, agents)

    async def _resume(self) -> None:
        async with self._store.tx(readonly=True) as tx:
            running = await tx.scans.running()
        loop = asyncio.get_running_loop()
        for scan in running:
            state = await self._load(scan.operationid)
            if state is None or state.complete():
                continue
            log.info("resuming scan %d: broadcasting it again", scan.operationid)
            state.resend_at = loop.time() + scan.quiet_timeout / 2
            state.resend_gap = state.resend_cap()
            await self._driver.broadcast(scan.operationid)

    async def _loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a database hiccup must not stop scans finishing later
                if is_unavailable(exc):
                    self._outage.failed(exc)  # logged once per outage, not per tick
                else:
                    log.exception("scan watcher sweep failed")
            else:
                if not self._driver.writes_waiting:
                    self._outage.recovered()
            await asyncio.sleep(self.tick)

    async def sweep(self) -> None:
        """One pass over the running scans."""
        # Only a scan known before the query can be judged by its answer: one started or
        # loaded while the query ran may be missing from its snapshot and still be running.
        known_before = [op for op, state in self._states.items() if state.running]
        async with self._store.tx(readonly=True) as tx:
            running = await tx.scans.running_activity()
        now = self._clock()
        mono = asyncio.get_running_loop().time()
        connected = getattr(self._bus, "connected", True)
        reconnected = self._saw_reconnect(now)
        open_ids = {scan.operationid for scan in running}
        for operationid in known_before:
            if operationid not in open_ids:
                self.forget(operationid)  # another replica finished it
        for scan in running:
            state = await self.state(scan.operationid)  # the cache first, else the store
            if state is None:
                continue
            activity = scan.last_activity
            if (
                not state.complete()
                and activity == state.seen_activity
                and activity != state.synced_activity
            ):
                await self._sync(state, activity)
            state.seen_activity = activity
            if state.store_failure is not None:
                await self._driver.finish(
                    scan.operationid, "database unavailable", unrecorded=state.store_failure
                )
                continue
            if state.complete():
                await self._driver.finish(scan.operationid, "every expected device answered")
                continue
            since = max(
                activity,
                self._serving_since or activity,
                self._reconnected_at or activity,
                self._outage.ended_at or activity,
            )
            quiet_for = (now - since).total_seconds()
            if reconnected:
                state.resend_at, state.resend_gap = mono, 1.0
            elif state.resend_at is None and quiet_for >= scan.quiet_timeout / 3:
                state.resend_at, state.resend_gap = mono, state.resend_cap()
            if connected and state.resend_at is not None and mono >= state.resend_at:
                state.resend_at = mono + state.resend_gap
                state.resend_gap = min(state.resend_gap * 2, state.resend_cap())
                await self._resend(state)
            if state.inflight or self._outage.down:
                continue  # replies are waiting (on the MES or the database): not silence
            if connected and quiet_for >= scan.quiet_timeout:
                await self._driver.finish(scan.operationid, "quiet timeout")

    def _saw_reconnect(self, now: datetime) -> bool:
        count = _reconnects(self._bus)
        if count == self._reconnects:
            return False
        self._reconnects = count
        self._reconnected_at = now
        return True

    async def _resend(self, state: ScanState) -> None:
        missing = len(state.expected.keys() - state.answered)
        log.info(
            "scan %d: sending the trigger again (%d of %d expected devices have not answered)",
            state.operationid,
            missing,
            len(state.expected),
        )
        try:
            await self._driver.broadcast(state.operationid)
        except Exception as exc:  # the bus went away again: the next reconnect re-sends
            log.warning("scan %d: could not send the trigger again: %s", state.operationid, exc)

    async def _sync(self, state: ScanState, activity: datetime) -> None:
        """Read other replicas' results for this scan."""
        async with self._store.tx(readonly=True) as tx:
            answered = await tx.scans.answered(state.operationid)
        state.answered.update(answered)
        state.synced_activity = activity


def _reconnects(bus: object) -> int:
    """How often the bus reconnected (a ``memory://`` bus never does)."""
    count = getattr(bus, "reconnects", 0)
    return count if isinstance(count, int) else 0
