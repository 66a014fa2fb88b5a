"""The burn-in scan service (seed 000, DESIGN §5): broadcast, collect, compare, finish.

Flow: :meth:`ScanService.start` allocates the operationid in the store,
records the devices expected to answer and broadcasts on ``devicescan``.
Replies arrive on ``hwinfo_queue`` (AMQP agents send them themselves; the
stream gateway forwards them for its agents), where every controller replica
is a competing consumer: each reply is validated, looked up in the MES,
compared and stored. A reply is acknowledged only after its result is
committed, so a controller killed mid-scan loses nothing: the broker
redelivers, and ``tx.scans.add_results`` de-duplicates what was stored already.

Results are written in batches by :mod:`hwfleet.controller.scan.writer`; events
reach the bus through :mod:`hwfleet.controller.scan.announcer`.

A scan finishes when every expected device has a result, or when it has
been quiet for its quiet timeout (see :mod:`hwfleet.controller.scan.watch`).
A database that is briefly unavailable delays the scan, it does not rewrite
its results (see :mod:`hwfleet.controller.scan.outage`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from hwfleet.bus.base import Delivery, RejectedMessageError, Subscription
from hwfleet.bus.topology import DEVICESCAN, HWINFO_QUEUE, EventKey
from hwfleet.controller.events import EventPublisher, utcnow
from hwfleet.controller.links import SenderCheck
from hwfleet.controller.presence import LivenessRule
from hwfleet.controller.scan.announcer import ScanAnnouncer
from hwfleet.controller.scan.compare import compare, failed_entry
from hwfleet.controller.scan.finish import INTERNAL, POSTS, Finished, finish_scan, idempotency_key
from hwfleet.controller.scan.identity import Admitted, Refused, admit
from hwfleet.controller.scan.outage import StoreOutage
from hwfleet.controller.scan.replies import BadReply, Reply, parse_reply
from hwfleet.controller.scan.watch import ScanState, ScanWatcher
from hwfleet.controller.scan.writer import ResultWriter
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
        self.watcher = ScanWatcher(
            store=store, bus=bus, clock=clock, outage=self.outage, driver=self, tick=tick
        )
        self.liveness = LivenessRule(settings.offline_after)
        self.announcer = ScanAnnouncer(self.events)
        self.writer = ResultWriter(
            store,
            self.watcher,
            self.outage,
            clock,
            announce=self._announce,
            written=self._finish_complete,
            batch_size=batch_size,
        )
        self._consumer: Subscription | None = None
        #: Replies this replica refused by the rules of hwfleet.controller.scan.identity.
        self.refused = 0

    @property
    def stored(self) -> int:
        """Replies whose results this replica stored (a figure for operators and benchmarks)."""
        return self.writer.stored

    @property
    def writes_waiting(self) -> bool:
        """The writer is retrying a batch the store refused (read by the watcher)."""
        return self.writer.waiting

    # -- lifecycle ----------------------------------------------------------------------------

    async def serve(self) -> None:
        """Consume ``hwinfo_queue`` and watch running scans (resuming those a restart left)."""
        if self._consumer is not None:
            return
        self.writer.start()
        self.announcer.start()
        await self.watcher.start()
        self._consumer = await self.bus.consume(
            HWINFO_QUEUE, self._on_reply, prefetch=self.prefetch
        )

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.cancel()
            self._consumer = None
        await self.watcher.close()
        await self.writer.close()
        await self.announcer.close()

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
        row = ScanResultRow(
            state.operationid, device_uuid, sn, hwinfo, entry, result, error, legacy
        )
        await self.writer.store_row(row)  # acknowledged only once committed

    async def _finish_complete(self, operationids: set[int]) -> None:
        """Finish the scans a committed batch completed."""
        for operationid in operationids:
            state = self.watcher.cached(operationid)
            if state is not None and state.running and state.complete():
                try:
                    await self.finish(operationid, "every expected device answered")
                except Exception:  # the watcher finishes it on a later sweep
                    log.exception("finishing scan %d failed", operationid)

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
        self.announcer.announce(event)
