"""Scan results into the store in batches, through short store outages.

One transaction holds every reply that arrived while the previous batch was being written,
and those that arrive within :data:`LINGER` of a batch's first row: on a 10,000-device
rack one commit per reply would make the database the bottleneck, and batches of a dozen
rows spent more CPU per device on each transaction's fixed cost (begin, the running-scan
check, the event insert, commit; through SQLAlchemy) than on the rows (``bench/scan.py``:
0.59 ms against 0.47 ms of controller CPU per device with a 30 ms linger). A reply waits
at most that much longer for its ack. A
reply's handler waits on :meth:`ResultWriter.store` until its row is committed, so the bus
acknowledges only what is stored. While the store is unavailable the batch is retried (see
:mod:`hwfleet.controller.scan.outage`); rows of a scan that the outage ended are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from hwfleet.bus.topology import EventKey
from hwfleet.store.errors import is_unavailable
from hwfleet.types import JsonObject, Serial

if TYPE_CHECKING:
    from hwfleet.controller.scan.outage import StoreOutage
    from hwfleet.controller.scan.watch import ScanWatcher
    from hwfleet.store import EventRecord, ScanResultRow, Store

log = logging.getLogger(__name__)

#: Seconds a batch waits for more rows once it has its first.
LINGER = 0.03


@dataclass(slots=True)
class _Pending:
    row: ScanResultRow
    done: asyncio.Future[bool]


def device_event_key(operationid: int, sn: Serial | None, device_uuid: str) -> str:
    """``scan.device.<op>.<sn>``, with a serial that would change the routing spelled safely."""
    try:
        return EventKey.scan_device(operationid, sn if sn is not None else device_uuid)
    except ValueError:  # a serial with '.', '*' or '#'
        safe = re.sub(r"[.*#]", "_", str(sn))[:200] or "unknown"
        return EventKey.scan_device(operationid, safe)


def _macs(entry: JsonObject | None) -> list[str]:
    return [m["macaddr"] for m in (entry or {}).get("macinfo", [])]


class ResultWriter:
    """Batches :meth:`store` calls into transactions.

    ``announce`` receives each committed event; ``written`` the operationids of each
    committed batch (the service finishes scans that became complete).
    """

    def __init__(
        self,
        store: Store,
        watcher: ScanWatcher,
        outage: StoreOutage,
        clock: Callable[[], datetime],
        *,
        announce: Callable[[EventRecord], None],
        written: Callable[[set[int]], Awaitable[None]],
        batch_size: int = 500,
        linger: float = LINGER,
    ) -> None:
        self.store = store
        self.watcher = watcher
        self.outage = outage
        self.clock = clock
        self.announce = announce
        self.written = written
        self.batch_size = batch_size
        self.linger = linger
        #: Retrying a batch the store refused (the watcher must not call the outage over on
        #: a successful read alone: SQLite with a full disk still reads).
        self.waiting = False
        #: Results this replica stored.
        self.stored = 0
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="scan result writer")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def store_row(self, row: ScanResultRow) -> None:
        """Queue ``row`` and return once it is committed (raises if the batch failed)."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(row, done))
        await done

    async def _loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            if self.linger > 0 and self._queue.qsize() < self.batch_size - 1:
                await asyncio.sleep(self.linger)
            while len(batch) < self.batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            events = await self._write_through_outage(batch)
            for item in batch:
                if not item.done.done():
                    item.done.set_result(True)
            for event in events:
                self.announce(event)
            await self.written({item.row.operationid for item in batch})

    async def _write_through_outage(self, batch: list[_Pending]) -> list[EventRecord]:
        """Write ``batch``, retrying while the store is unavailable; the events written.

        Any failure other than unavailability fails the batch's handlers: the bus requeues
        their replies once, as for any handler error.
        """
        attempt = 0
        try:
            while True:
                todo = [item for item in batch if not self._ended_by_outage(item.row)]
                if not todo:
                    return []
                try:
                    events = await self._write(todo)
                except Exception as exc:
                    if not is_unavailable(exc):
                        log.exception("storing %d scan results failed", len(todo))
                        for item in todo:
                            if not item.done.done():
                                item.done.set_exception(exc)
                        return []
                    self.waiting = True
                    self.outage.failed(exc)
                    if self.outage.exceeded():  # their rows are dropped on the next pass
                        self._end_by_outage({item.row.operationid for item in todo})
                    attempt += 1
                    await self.outage.pause(attempt)
                    continue
                self.outage.recovered()
                return events
        finally:
            self.waiting = False

    def _ended_by_outage(self, row: ScanResultRow) -> bool:
        state = self.watcher.cached(row.operationid)
        return state is not None and state.store_failure is not None

    def _end_by_outage(self, operationids: set[int]) -> None:
        verdict = self.outage.give_up()
        for operationid in operationids:
            state = self.watcher.cached(operationid)
            if state is not None and state.store_failure is None:
                log.error("scan %d ends in an internal error: %s", operationid, verdict)
                state.store_failure = verdict

    async def _write(self, batch: list[_Pending]) -> list[EventRecord]:
        now = self.clock()
        async with self.store.tx() as tx:
            new = await tx.scans.add_results([item.row for item in batch], at=now)
            await tx.devices.record_legacy(
                [
                    (r.device_uuid, r.sn, _macs(r.entry))
                    for r in new
                    if r.legacy and r.sn is not None
                ],
                at=now,
            )
            items = [
                (
                    device_event_key(row.operationid, row.sn, row.device_uuid),
                    {
                        "operationid": row.operationid,
                        "uuid": row.device_uuid,
                        "sn": row.sn,
                        "result": row.result,
                        "error": row.error,
                    },
                    row.device_uuid,
                )
                for row in new
            ]
            records = await tx.events.add_many(items, at=now)
            for operationid in {item.row.operationid for item in batch}:
                await tx.scans.touch(operationid, now)
        self.stored += len(new)
        for row in new:
            state = self.watcher.cached(row.operationid)
            if state is not None:
                state.answered.add(row.device_uuid)
        return records
