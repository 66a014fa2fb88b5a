"""The burn-in scan service (seed 000, DESIGN §5): broadcast, collect, compare, finish.

Flow: :meth:`ScanService.start` allocates the operationid in the store,
records the devices expected to answer and broadcasts on ``devicescan``.
Replies arrive on ``hwinfo_queue`` (AMQP agents send them themselves; the
stream gateway forwards them for its agents), where every controller replica
is a competing consumer: each reply is validated, looked up in the MES,
compared and stored. A reply is acknowledged only after its result is
committed, so a controller killed mid-scan loses nothing: the broker
redelivers, and ``tx.scans.add_results`` de-duplicates what was stored already.

Results are written in batches (one transaction for every reply that
arrived while the previous batch was being written): on a 10,000-device
rack one commit per reply would make the database the bottleneck.

A scan finishes when every expected device has a result, or when it has
been quiet for its quiet timeout (see :mod:`hwfleet.controller.scan.watch`).
A database that is briefly unavailable delays the scan, it does not rewrite
its results (see :mod:`hwfleet.controller.scan.outage`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from hwfleet.bus.base import Delivery, RejectedMessageError, Subscription
from hwfleet.bus.topology import DEVICESCAN, HWINFO_QUEUE, EventKey
from hwfleet.controller.events import EventPublisher, utcnow
from hwfleet.controller.links import SenderCheck
from hwfleet.controller.presence import LivenessRule
from hwfleet.controller.scan.compare import compare, failed_entry
from hwfleet.controller.scan.finish import INTERNAL, POSTS, Finished, finish_scan, idempotency_key
from hwfleet.controller.scan.identity import Admitted, Refused, admit
from hwfleet.controller.scan.outage import StoreOutage
from hwfleet.controller.scan.replies import BadReply, Reply, parse_reply
from hwfleet.controller.scan.watch import ScanState, ScanWatcher
from hwfleet.errors import ScanRunningError
from hwfleet.integrations.mes import MesClient, MesError
from hwfleet.protocol.carrier import device_of_user
from hwfleet.store import ScanResultRow
from hwfleet.store.errors import is_unavailable
from hwfleet.types import JsonObject, Serial

if TYPE_CHECKING:
    from hwfleet.bus.base import Bus
    from hwfleet.controller.outbox import OutboxWorker
    from hwfleet.settings import ServerSettings
    from hwfleet.store import EventRecord, ScanRecord, Store

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Pending:
    row: ScanResultRow
    done: asyncio.Future[bool]


def _device_event_key(operationid: int, sn: Serial | None, device_uuid: str) -> str:
    try:
        return EventKey.scan_device(operationid, sn if sn is not None else device_uuid)
    except ValueError:  # a serial with '.', '*' or '#' would change the routing: spell it safely
        safe = re.sub(r"[.*#]", "_", str(sn))[:200] or "unknown"
        return EventKey.scan_device(operationid, safe)


def _macs(entry: JsonObject | None) -> list[str]:
    return [m["macaddr"] for m in (entry or {}).get("macinfo", [])]


class ScanService:
    """Runs scans; :meth:`serve` starts consuming replies, :meth:`close` stops."""

    def __init__(
        self,
        store: Store,
        bus: Bus,
        mes: MesClient,
        settings: ServerSettings,
        clock: Callable[[], datetime] = utcnow,
        *,
        outbox: OutboxWorker | None = None,
        events: EventPublisher | None = None,
        prefetch: int = 256,
        batch_size: int = 500,
        tick: float = 0.2,
        senders: SenderCheck | None = None,
        quiet_default: Callable[[], float] | None = None,
    ) -> None:
        """``quiet_default``: the live ``scan.quiet_timeout`` (default: the start-up setting)."""
        self.store = store
        self.bus = bus
        self.mes = mes
        self.settings = settings
        self.clock = clock
        self.outbox = outbox
        self.events = events or EventPublisher(store, bus)
        self.prefetch = prefetch
        self.batch_size = batch_size
        #: Who may send a reply for which device (per-device bus credentials).
        self.senders = senders or SenderCheck.for_controller(settings, bus)
        self.quiet_default = quiet_default or (lambda: settings.scan_quiet_timeout)
        self.outage = StoreOutage(settings.scan_store_outage, clock)
        #: The writer is retrying a batch the store refused (the watcher must not call the
        #: outage over on a successful read alone: SQLite with a full disk still reads).
        self.writes_waiting = False
        self.watcher = ScanWatcher(
            store=store, bus=bus, clock=clock, outage=self.outage, driver=self, tick=tick
        )
        self.liveness = LivenessRule(settings.offline_after)
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._announcements: asyncio.Queue[EventRecord] = asyncio.Queue()
        self._announcer: asyncio.Task[None] | None = None
        self._consumer: Subscription | None = None
        #: Replies whose results this replica stored (a figure for operators and benchmarks).
        self.stored = 0
        #: Replies this replica refused by the rules of hwfleet.controller.scan.identity.
        self.refused = 0

    # -- lifecycle ----------------------------------------------------------------------------

    async def serve(self) -> None:
        """Consume ``hwinfo_queue`` and watch running scans (resuming those a restart left)."""
        if self._writer is not None:
            return
        self._writer = asyncio.create_task(self._write_loop(), name="scan result writer")
        self._announcer = asyncio.create_task(self._announce_loop(), name="scan events")
        await self.watcher.start()
        self._consumer = await self.bus.consume(
            HWINFO_QUEUE, self._on_reply, prefetch=self.prefetch
        )

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.cancel()
            self._consumer = None
        await self.watcher.close()
        for task in (self._writer, self._announcer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._writer = self._announcer = None

    async def __aenter__(self) -> ScanService:
        await self.serve()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # -- starting a scan ----------------------------------------------------------------------

    async def start(
        self, expected: list[JsonObject] | None = None, *, quiet_timeout: float | None = None
    ) -> ScanRecord:
        """Allocate an operationid, record who must answer, broadcast on ``devicescan``.

        ``expected`` is a list of ``{"uuid", "sn"}``; by default the devices online now, by
        the liveness rule every replica shares (:mod:`hwfleet.controller.presence`), and,
        unless ``scan_legacy`` is off, every legacy device that answered an earlier scan
        (they never connect, so they are never online). Raises :class:`ScanRunningError` while
        another scan runs (on any replica): two scans at once would both post deviceScan and
        Pair for the same devices.
        """
        quiet = float(quiet_timeout or self.quiet_default())
        now = self.clock()
        async with self.store.tx() as tx:
            await tx.scans.lock_starts()
            running = await tx.scans.running_activity()
            if running:
                raise ScanRunningError(running[0].operationid)
            if expected is None:
                online = await tx.devices.online(self.liveness.stale_before(now))
                if self.settings.scan_legacy:
                    online += await tx.devices.legacy()
                expected = [{"uuid": uuid, "sn": sn} for uuid, sn in online]
            agents = await tx.devices.agent_serials()
            scan = await tx.scans.create(expected=expected, quiet_timeout=quiet, at=now)
            payload = {
                "operationid": scan.operationid,
                "expected": len(expected),
                "quiet_timeout": quiet,
            }
            event = await tx.events.add(EventKey.scan_started(scan.operationid), payload, at=now)
        self.watcher.adopt(scan, [], agents)
        await self.broadcast(scan.operationid)
        self._announce(event)
        log.info("scan %d started: %d devices expected", scan.operationid, len(expected))
        return scan

    def unanswered(self, device_uuid: str) -> list[int]:
        """operationids of the running scans still waiting for this device's reply."""
        return self.watcher.unanswered(device_uuid)

    def answered(self, device_uuid: str, operationid: int) -> bool:
        """Whether this replica knows the device has a result in that scan."""
        state = self.watcher.cached(operationid)
        return state is not None and device_uuid in state.answered

    def mes_post_keys(self, scan: ScanRecord) -> list[str]:
        """The idempotency keys of every MES post this scan makes (its outbox rows)."""
        return [idempotency_key(scan, kind) for kind in POSTS]

    async def broadcast(self, operationid: int) -> None:
        """The trigger, as seed 000's reference client reads it (``action`` 1)."""
        await self.bus.publish(DEVICESCAN, "", {"operationid": operationid, "action": 1})

    # -- replies ------------------------------------------------------------------------------

    async def _on_reply(self, delivery: Delivery) -> None:
        parsed = parse_reply(delivery.body)
        if parsed.operationid is None:
            raise RejectedMessageError(
                f"{parsed.reason if isinstance(parsed, BadReply) else ''} (no operationid)"
            )
        state = await self._state_through_outage(parsed.operationid)
        if state is None:
            raise RejectedMessageError(f"scan reply for unknown operationid {parsed.operationid}")
        enrolled = bool(parsed.uuid) or device_of_user(delivery.user_id) is not None
        if not state.running:
            log.info("late reply for finished scan %d dropped", parsed.operationid)
            if not enrolled and isinstance(parsed, Reply):
                await self._remember_legacy(state, parsed)
            return
        # Without a uuid or a device's own user: a device that never enrolled (seed 000's
        # reference client), known by its serial only.
        claimed = self.senders.scan_reply(delivery, parsed.uuid or None) if enrolled else None
        admitted = admit(
            state,
            claimed,
            parsed.sn,
            legacy_allowed=self.settings.scan_legacy,
            agent_serials=state.agent_serials,
        )
        if admitted is None:
            reason = parsed.reason if isinstance(parsed, BadReply) else "no device identity"
            raise RejectedMessageError(f"{reason}; the reply names neither a uuid nor an sn")
        if isinstance(admitted, Refused):
            await self._refuse(state, admitted, delivery)
            return
        device_uuid, sn = admitted.device_uuid, admitted.sn
        if device_uuid in state.answered:
            return  # a redelivery of a stored reply (or a device answering twice)
        legacy = admitted.legacy
        # In flight from here until stored: a reply waiting on the MES or on the database
        # is not silence, and the quiet timeout must not overtake it.
        state.inflight += 1
        try:
            if isinstance(parsed, BadReply):
                entry = failed_entry(sn, parsed.reason) if sn is not None else None
                await self._store(state, device_uuid, sn, None, entry, parsed.reason, legacy)
                return
            entry, error = await self._check(parsed)
            await self._store(state, device_uuid, sn, parsed.hwinfo, entry, error, legacy)
        finally:
            state.inflight -= 1

    async def _state_through_outage(self, operationid: int) -> ScanState | None:
        """The scan's state, waiting for the store if it is unavailable (never a bad reply)."""
        attempt = 0
        while True:
            try:
                return await self.watcher.state(operationid)
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                self.outage.failed(exc)
            attempt += 1
            await self.outage.pause(attempt)

    async def _remember_legacy(self, state: ScanState, reply: Reply) -> None:
        """A legacy device too late for its scan is recorded, so the next scan expects it."""
        admitted = admit(
            state,
            None,
            reply.sn,
            legacy_allowed=self.settings.scan_legacy,
            agent_serials=state.agent_serials,
        )
        if isinstance(admitted, Admitted):
            macs = [m.macaddr for m in reply.macs]
            async with self.store.tx() as tx:
                await tx.devices.record_legacy(
                    [(admitted.device_uuid, reply.sn, macs)], at=self.clock()
                )

    async def _refuse(self, state: ScanState, refused: Refused, delivery: Delivery) -> None:
        """Record a refused reply as a ``scan.refused.<op>`` event, log and count it."""
        self.refused += 1
        log.warning("scan %d: reply refused: %s", state.operationid, refused.reason)
        payload = {
            "operationid": state.operationid,
            "uuid": refused.device_uuid,
            "sn": refused.sn,
            "sender": delivery.user_id,
            "reason": refused.reason,
        }
        async with self.store.tx() as tx:
            event = await tx.events.add(
                EventKey.scan_refused(state.operationid),
                payload,
                device_uuid=refused.device_uuid,
                at=self.clock(),
            )
        self._announce(event)

    async def _check(self, reply: Reply) -> tuple[JsonObject, str | None]:
        """The device's entry, and the error stored with it (the MES's, without the serial)."""
        try:
            record = await self.mes.get_device(reply.sn)
        except MesError as exc:
            log.warning("scan %d: %s", reply.operationid, exc)
            entry = failed_entry(reply.sn, f"{INTERNAL}{exc}", reply.macs)
            return entry, f"{INTERNAL}{exc.summary}"
        entry = compare(reply.sn, reply.macs, record)
        return entry, entry.get("error")

    async def _store(
        self,
        state: ScanState,
        device_uuid: str,
        sn: Serial | None,
        hwinfo: JsonObject | None,
        entry: JsonObject | None,
        error: str | None,
        legacy: bool = False,
    ) -> None:
        result = entry["result"] if entry is not None else "0"
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        row = ScanResultRow(
            state.operationid, device_uuid, sn, hwinfo, entry, result, error, legacy
        )
        pending = _Pending(row, done)
        self._queue.put_nowait(pending)
        await done  # acknowledged only once committed

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            events = await self._write_through_outage(batch)
            for item in batch:
                if not item.done.done():
                    item.done.set_result(True)
            for event in events:
                self._announce(event)
            for operationid in {item.row.operationid for item in batch}:
                state = self.watcher.cached(operationid)
                if state is not None and state.running and state.complete():
                    try:
                        await self.finish(operationid, "every expected device answered")
                    except Exception:  # the watcher finishes it on a later sweep
                        log.exception("finishing scan %d failed", operationid)

    async def _write_through_outage(self, batch: list[_Pending]) -> list[EventRecord]:
        """Write ``batch``, retrying while the store is unavailable; the events written.

        Rows of a scan that the outage ended (see :mod:`~hwfleet.controller.scan.outage`)
        are dropped unwritten. Any other failure fails the batch's handlers: the bus
        requeues their replies once, as for any handler error.
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
                    self.writes_waiting = True
                    self.outage.failed(exc)
                    if self.outage.exceeded():  # their rows are dropped on the next pass
                        self._end_by_outage({item.row.operationid for item in todo})
                    attempt += 1
                    await self.outage.pause(attempt)
                    continue
                self.outage.recovered()
                return events
        finally:
            self.writes_waiting = False

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
                    _device_event_key(row.operationid, row.sn, row.device_uuid),
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

    # -- finishing ----------------------------------------------------------------------------

    async def finish(
        self, operationid: int, reason: str, *, unrecorded: str | None = None
    ) -> Finished | None:
        """Finish the scan now (exactly once across replicas); None if someone else did.

        ``unrecorded``: the internal error that kept replies from being stored; devices
        without a result carry it instead of "no reply to the scan".
        """
        async with self.store.tx() as tx:
            finished = await finish_scan(
                tx,
                operationid,
                urls=self.mes.urls,
                reason=reason,
                at=self.clock(),
                unrecorded=unrecorded,
            )
        self.watcher.forget(operationid)
        if finished is None:
            return None
        log.info(
            "scan %d %s (%s): %d of %d devices passed",
            operationid,
            finished.state,
            reason,
            len(finished.outcome.passed),
            len(finished.outcome.document["scaninfo"]),
        )
        if self.outbox is not None and finished.posts:
            self.outbox.wake()
        self._announce(finished.event)
        return finished

    def _announce(self, event: EventRecord) -> None:
        """Queue an event (its row is committed) for the bus, off the write path."""
        self._announcements.put_nowait(event)

    async def _announce_loop(self) -> None:
        # Publishing one event at a time would cap a big scan at the broker's confirm latency:
        # publish what has accumulated concurrently, but a scan's "finished" after its devices.
        while True:
            chunk = [await self._announcements.get()]
            while len(chunk) < 1000 and not self._announcements.empty():
                chunk.append(self._announcements.get_nowait())
            last = [e for e in chunk if e.routing_key.startswith("scan.finished.")]
            first = [e for e in chunk if not e.routing_key.startswith("scan.finished.")]
            await asyncio.gather(*(self._publish(e) for e in first))
            for event in last:
                await self._publish(event)

    async def _publish(self, event: EventRecord) -> None:
        await self.events.announce(event.routing_key, event.payload, event_id=event.id, at=event.at)
