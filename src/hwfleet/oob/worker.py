"""The poller worker: claims pollers in batches under a lease, polls each on time, stores data.

Each replica runs one. Every ``tick`` (or at once when pollers change) it claims, in one
transaction, the pollers due within the next two ticks, together with their nodes' BMC
records, and puts each on the event loop's timer heap at its exact due time: the
schedule's precision is the loop's, not the claim interval's, and the store sees one
claim per tick rather than a query per poll. Redfish polls go through the shared
asyncio client (:mod:`hwfleet.oob.redfish_poll`); other drivers run in the service's
thread pool, at most ``slots`` at once. Results wait for the next tick and are written in
the same transaction as that tick's claim (one executemany): the store sees one
transaction per tick, whatever the number of BMCs.

A failure records the scrubbed error, counts it, and pushes the next try out by
``interval * 2^failures`` (capped at 1 h); the worker itself never stops on a BMC's
behalf. A replica that dies leaves leases that expire; another replica takes them over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from hwfleet.oob.alerts import evaluate
from hwfleet.oob.driver import BmcAddress, BmcError
from hwfleet.oob.service import NoBmcError, OobService
from hwfleet.oob.vault import VaultError
from hwfleet.store.bmcs import BmcRecord, BmcRepository
from hwfleet.store.pollers import PollerRecord, PollerRepository

log = logging.getLogger(__name__)

#: ``alert(poller, alert)``: publish one alert (the controller sends it to the bus and events).
AlertSink = Callable[[PollerRecord, dict[str, Any]], Awaitable[None]]
#: At most this many pollers claimed and not yet written back per worker.
BATCH = 1024


def utcnow() -> datetime:
    return datetime.now(UTC)


def spread(poller_id: int, interval: float) -> float:
    """Seconds to a late poller's next run: between 0.5 and 1.5 intervals, by its id.

    Pollers that fell behind together (a fleet's BMCs added at once, a replica's
    outage) would otherwise stay bunched forever, every round a burst that makes
    them late again; this spreads them evenly over an interval (the golden-ratio
    sequence of ids) instead of firing a burst to catch up.
    """
    return interval * (0.5 + (poller_id * 0.6180339887) % 1.0)


class _Result(msgspec.Struct):
    record: PollerRecord
    at: datetime
    data: Any = None
    error: str | None = None
    #: The node's BMC error as stored at claim time (written only when it changes).
    bmc_error: str | None = None
    has_bmc: bool = False


class PollerWorker:
    def __init__(
        self,
        oob: OobService,
        *,
        worker: str,
        lease: float,
        tick: float,
        slots: int,
        alert: AlertSink | None = None,
    ) -> None:
        self.oob = oob
        self.worker = worker
        self.lease = lease
        self.tick = tick
        self.slots = slots
        self.alert = alert
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._threads = asyncio.Semaphore(slots)
        self._pending: list[_Result] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        #: node -> (sealed record, its address): unsealing once per change, not per poll.
        self._addresses: dict[str, tuple[bytes, BmcAddress]] = {}
        #: Lateness (s) of recent polls against their schedule (bench/pollers.py).
        self.stats: list[float] = []
        self.keep_stats = False

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop(), name=f"pollers {self.worker}")]

    def wake(self) -> None:
        """Look for due pollers now (a poller was added or changed)."""
        self._wake.set()

    async def close(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for task in [*self._tasks, *self._running]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._running, return_exceptions=True)
        batch, self._pending = self._pending, []
        try:  # what finished is written; what did not keeps its lease until it expires
            if batch:
                async with self.oob.store.tx() as tx:
                    await self._write(tx.conn, batch)
        except Exception:
            log.exception("poller worker %s: writing the last results failed", self.worker)

    async def _loop(self) -> None:
        while True:
            try:
                wait = await self.run_once()
            except Exception:  # a store outage: try again next tick, never die
                log.exception("poller worker %s: claiming failed", self.worker)
                wait = self.tick
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def run_once(self) -> float:
        """Write what finished, claim what is due within two ticks and time it: one
        transaction. Returns the seconds to the next look."""
        batch, self._pending = self._pending, []
        free = BATCH - len(self._timers) - len(self._running)
        loop = asyncio.get_running_loop()
        t0, now = loop.time(), utcnow()
        try:
            async with self.oob.store.tx() as tx:
                await self._write(tx.conn, batch)
                claimed = (
                    await PollerRepository(tx.conn).claim(
                        worker=self.worker,
                        limit=free,
                        lease=self.lease,
                        now=now,
                        until=now + timedelta(seconds=2 * self.tick),
                    )
                    if free > 0
                    else []
                )
                bmcs = await BmcRepository(tx.conn).get_many(r.node for r in claimed)
        except Exception:  # a store outage: the results' leases expire and they are redone
            if batch:
                log.warning("poller worker %s: %d results not written", self.worker, len(batch))
            raise
        for record in claimed:
            due = t0 + (record.next_run_at - now).total_seconds()
            self._timers[record.id] = loop.call_at(due, self._start, record, bmcs.get(record.node))
        await self._alerts(batch)
        return 0.0 if free > 0 and len(claimed) == free else self.tick

    def _start(self, record: PollerRecord, bmc: BmcRecord | None) -> None:
        self._timers.pop(record.id, None)
        task = asyncio.create_task(self._poll(record, bmc))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    def _address(self, node: str, bmc: BmcRecord | None) -> BmcAddress:
        if bmc is None:
            raise NoBmcError(f"node {node} has no BMC (set one with `hwfleet bmc set`)")
        cached = self._addresses.get(node)
        if cached is not None and cached[0] == bmc.sealed:
            return cached[1]
        try:
            address = self.oob.vault.unseal(node, bmc.sealed)
        except VaultError as exc:
            raise BmcError("auth", str(exc)) from None
        self._addresses[node] = (bmc.sealed, address)
        return address

    async def _poll(self, record: PollerRecord, bmc: BmcRecord | None) -> None:
        started = utcnow()
        if self.keep_stats:
            self.stats.append((started - record.next_run_at).total_seconds())
        result = _Result(
            record, started, bmc_error=bmc.last_error if bmc else None, has_bmc=bmc is not None
        )
        try:
            address = self._address(record.node, bmc)
            if address.driver == "redfish":
                result.data = await self.oob.redfish_poll(address, record.type)
            else:
                async with self._threads:
                    result.data = await self.oob.run_at(address, lambda d: d.poll(record.type))
        except (BmcError, NoBmcError) as exc:
            result.error = str(exc)
        except Exception as exc:  # never lose the lease over a bug: record and back off
            log.exception("poller %s (%s of %s) failed", record.id, record.type, record.node)
            result.error = f"internal: {type(exc).__name__}"
        result.at = utcnow()
        self._pending.append(result)
        if len(self._pending) >= BATCH // 2:
            self._wake.set()  # many finished at once (a first round): write them now

    async def _write(self, conn: Any, batch: list[_Result]) -> None:
        """Store a batch of results in the caller's transaction."""
        if not batch:
            return
        ok = []
        for r in batch:
            if r.error is None:
                following = r.record.next_run_at + timedelta(seconds=r.record.interval)
                if following <= r.at:
                    following = r.at + timedelta(seconds=spread(r.record.id, r.record.interval))
                ok.append((r.record.id, r.data, following, r.at))
        repo = PollerRepository(conn)
        await repo.succeeded_many(worker=self.worker, results=ok)
        bmcs = BmcRepository(conn)
        for r in batch:
            if r.error is not None:
                await repo.failed(r.record.id, worker=self.worker, error=r.error, at=r.at)
            if r.has_bmc and r.error != r.bmc_error:
                await bmcs.set_error(r.record.node, r.error, r.at)

    async def _alerts(self, batch: list[_Result]) -> None:
        if self.alert is None:
            return
        for r in batch:
            if r.error is not None:
                continue
            for alert in evaluate(r.record.type, r.record.last_data, r.data, r.record.rules):
                try:
                    await self.alert(r.record, alert)
                except Exception:
                    log.exception("poller %s: publishing an alert failed", r.record.id)
