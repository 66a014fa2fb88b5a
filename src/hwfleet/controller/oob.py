"""Bringing out-of-band management (hwfleet.oob) up inside the controller: its composition."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hwfleet.api.convert import to_json
from hwfleet.api.oob import http_error
from hwfleet.oob.driver import BmcError
from hwfleet.oob.fwjob import FirmwareJobs, TaskUpdates
from hwfleet.oob.service import NoBmcError, OobService
from hwfleet.oob.taskchannel import TaskChannel
from hwfleet.oob.vault import Vault
from hwfleet.oob.worker import PollerWorker
from hwfleet.protocol import methods

if TYPE_CHECKING:
    from hwfleet.bus.base import Bus
    from hwfleet.controller.events import EventPublisher
    from hwfleet.settings import ServerSettings
    from hwfleet.store import Store
    from hwfleet.store.pollers import PollerRecord


class Oob:
    """The BMC service, the poller worker, the task channel and the poller-cache RPC."""

    def __init__(self, service: OobService, worker: PollerWorker, channel: TaskChannel) -> None:
        self.service = service
        self.worker = worker
        self.channel = channel
        self.jobs: FirmwareJobs | None = None
        self._closers: list[Any] = []

    @classmethod
    async def start(
        cls,
        settings: ServerSettings,
        store: Store,
        bus: Bus,
        events: EventPublisher,
        replica: str,
        tasks: TaskUpdates,
    ) -> Oob:
        service = OobService(
            store,
            Vault.open(settings.data_dir),
            timeout=settings.bmc_timeout,
            workers=settings.bmc_workers,
        )

        async def alert(poller: PollerRecord, found: dict[str, Any]) -> None:
            body = {"node": poller.node, "pollerId": poller.id, "type": poller.type, **found}
            # The node stands where seed 003 has a graph id: pollers here belong to no graph.
            key = f"poller.alert.{poller.node}"
            # Recorded first: whoever reacts to the bus message finds the event already there.
            await events.emit(key, body, device_uuid=poller.node)
            await bus.publish("task", key, body)

        worker = PollerWorker(
            service,
            worker=f"pollers-{replica}",
            lease=settings.poller_lease,
            tick=settings.poller_tick,
            slots=settings.bmc_workers,
            alert=alert,
        )
        service.on_change = worker.wake
        service.pollers.on_change = worker.wake
        channel = TaskChannel(bus, service)
        self = cls(service, worker, channel)
        # Firmware/BIOS applies are task rows; orphaned ones are resumed (docs/oob.md).
        jobs = self.jobs = service.firmware_jobs = FirmwareJobs(
            service, tasks, stale=settings.bmc_task_stale
        )
        try:
            jobs.serve()
            self._closers.append(jobs.close)
            await channel.start()
            self._closers.append(channel.close)
            sub = await service.pollers.serve(bus)
            self._closers.append(sub.cancel)
            worker.start()
            self._closers.append(worker.close)
        except BaseException:
            await self.close()
            await service.close()
            raise
        self._closers.insert(0, service.close)
        return self

    async def close(self) -> None:
        while self._closers:
            await self._closers.pop()()

    async def bmc_methods(
        self, node: str, method: str, params: dict[str, Any]
    ) -> dict[str, Any] | None:
        """``hwfleet run UUID decom.firmware_secure``: served by the node's BMC when it has one.

        Params: ``spec`` (the whole spec) or ``bios`` / ``firmware`` directly, and
        ``dry_run``. A dry run answers the plan; otherwise the answer is the task row the
        update runs as. A node without a BMC returns None: its agent gets the command.
        """
        if methods.canonical(method) != methods.DECOM_FIRMWARE_SECURE:
            return None
        try:
            await self.service.address(node)
        except NoBmcError:
            return None
        except BmcError as exc:
            raise http_error(exc) from None
        spec = params.get("spec")
        if spec is None:
            spec = {k: params[k] for k in ("bios", "firmware") if k in params}
        try:
            if params.get("dry_run") in (True, "true", "1", 1):
                return {"result": await self.service.firmware_plan(node, spec)}
            assert self.jobs is not None  # set in start()
            return {"task": to_json(await self.jobs.start(node, spec))}
        except (BmcError, NoBmcError) as exc:
            raise http_error(exc) from None
