"""``decom.firmware_secure`` through a BMC as a tracked task that outlives a controller restart.

Applying a spec takes minutes (a BMC flashes an image in its own time), so it is a task
row like an agent's long command: ``hwfleet tasks`` and ``GET /tasks/{id}`` show its
percent, ETA and phase, and ``task.finished.<id>`` announces its end. The row also holds
a checkpoint (``result.checkpoint`` while it runs; the report replaces it at the end):
the plan, the components already installed, and the BMC task monitor of the update in
flight. A controller that stops mid-update leaves the row ``running``; the replica that
takes it over (:class:`~hwfleet.store.bmc_tasks.BmcTaskRepository`: untouched for
``stale`` seconds) resumes waiting on that monitor instead of sending the image again.

Steps: plan (read FirmwareInventory and Bios) → download and check every image's SHA-256
→ SimpleUpdate per component, following its task monitor (percent, ETA) → one Bios
PATCH → read everything back until it settles. The one ambiguous moment is a restart
between sending SimpleUpdate and storing its monitor: the resumed task then reads the
component's version and sends the update again only if it is not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import msgspec

from hwfleet.oob.driver import BmcError, UpdateProgress
from hwfleet.oob.firmware import changes, check_image, differences, parse_spec, plan
from hwfleet.oob.service import NoBmcError, OobService
from hwfleet.protocol import envelope, methods
from hwfleet.store.bmc_tasks import VIA_BMC, BmcTaskRepository
from hwfleet.store.records import TaskRecord

log = logging.getLogger(__name__)

METHOD = methods.DECOM_FIRMWARE_SECURE
#: Seconds a row may go untouched before another replica takes the task over.
STALE = 60.0
#: Seconds one component's update may run on the BMC before the task fails.
UPDATE_DEADLINE = 3600.0
#: Seconds for downloading and hashing every image.
CHECK_DEADLINE = 1800.0


class TaskUpdates(Protocol):
    """Where progress goes (the controller's :class:`~hwfleet.controller.tasks.TaskService`)."""

    async def update(self, uuid: str, status: methods.TaskStatus) -> TaskRecord: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


class FirmwareJobs:
    """Starts firmware tasks, runs them, and takes over the ones a stopped replica left."""

    def __init__(
        self, oob: OobService, tasks: TaskUpdates, *, stale: float = STALE, poll: float = 1.0
    ) -> None:
        self.oob = oob
        self.tasks = tasks
        self.stale = stale
        #: Seconds between looks at a BMC's task monitor (the BMC may say otherwise: no).
        self.poll = poll
        self._jobs: dict[str, asyncio.Task[None]] = {}
        self._starting: set[str] = set()
        self._scanner: asyncio.Task[None] | None = None

    async def start(self, node: str, spec: Any) -> TaskRecord:
        """Check the spec and the BMC record, write the row, run the task in the background."""
        parsed = parse_spec(spec)
        await self.oob.address(node)  # no BMC, or credentials that do not decrypt: no row
        async with self.oob.store.tx() as tx:
            active = await tx.tasks.list(device_uuid=node, active_only=True)
            for t in active:
                if t.method == METHOD and t.params.get("via") == VIA_BMC:
                    raise BmcError(
                        "bad_input", f"firmware task {t.id} is still running on node {node}"
                    )
        task_id = envelope.new_id()
        # Known before the commit: the take-over scan must never see it as orphaned.
        self._starting.add(task_id)
        try:
            async with self.oob.store.tx() as tx:
                params = {"task_id": task_id, "spec": msgspec.to_builtins(parsed), "via": VIA_BMC}
                record = await tx.tasks.create(task_id, node, METHOD, params, utcnow())
            self._launch(record)
        finally:
            self._starting.discard(task_id)
        log.info("firmware task %s on %s started", task_id, node)
        return record

    def serve(self) -> None:
        """Take over orphaned tasks now and every ``stale / 2`` seconds."""
        self._scanner = asyncio.create_task(self._scan(), name="firmware tasks: take over")

    async def close(self) -> None:
        """Stop watching; running tasks stay ``running`` in the store for the next owner."""
        running = [t for t in [self._scanner, *self._jobs.values()] if t is not None]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        self._jobs.clear()

    async def _scan(self) -> None:
        while True:
            try:
                await self.take_over()
            except Exception:  # a store outage: look again later
                log.exception("firmware tasks: looking for orphaned tasks failed")
            await asyncio.sleep(max(self.stale / 2, 1.0))

    async def take_over(self) -> list[str]:
        """Claim and resume the firmware tasks nobody has touched for ``stale`` seconds."""
        now = utcnow()
        before = now - timedelta(seconds=self.stale)
        taken = []
        async with self.oob.store.tx() as tx:
            repo = BmcTaskRepository(tx.conn)
            for record in await repo.stale(METHOD, before):
                mine = record.id in self._jobs or record.id in self._starting
                if not mine and await repo.claim(record.id, before, now):
                    taken.append(record)
        for record in taken:
            log.info("firmware task %s on %s: resuming", record.id, record.device_uuid)
            self._launch(record)
        return [r.id for r in taken]

    def _launch(self, record: TaskRecord) -> None:
        task = asyncio.create_task(self._run(record), name=f"firmware task {record.id}")
        self._jobs[record.id] = task
        task.add_done_callback(lambda _: self._jobs.pop(record.id, None))

    async def _run(self, record: TaskRecord) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(record.id))
        try:
            report = await _Job(self, record).run()
        except (BmcError, NoBmcError) as exc:
            await self._end(record, "error", msg=str(exc))
        except asyncio.CancelledError:
            raise  # the controller stops: the row stays running for whoever takes it over
        except Exception as exc:  # a bug must still end the task, not leave it hanging
            log.exception("firmware task %s failed", record.id)
            await self._end(record, "error", msg=f"internal: {type(exc).__name__}")
        else:
            done = f"{len(report['changed'])} changed, {len(report['matched'])} already matched"
            await self._end(record, "complete", msg=done, result=report)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _end(
        self, record: TaskRecord, state: str, *, msg: str | None = None, result: Any = None
    ) -> None:
        status = methods.TaskStatus(
            task_id=record.id,
            state=state,
            percent=100.0 if state == "complete" else None,
            msg=msg,
            result=result,
        )
        await self.tasks.update(record.device_uuid, status)
        log.info("firmware task %s on %s: %s %s", record.id, record.device_uuid, state, msg or "")

    async def _heartbeat(self, task_id: str) -> None:
        """Keep the row fresh while a long step (a download, a flash) writes no progress."""
        while True:
            await asyncio.sleep(max(self.stale / 3, 0.5))
            with contextlib.suppress(Exception):  # a missed beat is retried at the next one
                async with self.oob.store.tx() as tx:
                    if not await BmcTaskRepository(tx.conn).touch(task_id, utcnow()):
                        return


class _Job:
    """One run (or resumption) of one firmware task, from its checkpoint."""

    def __init__(self, jobs: FirmwareJobs, record: TaskRecord) -> None:
        self.jobs = jobs
        self.record = record
        self.node = record.device_uuid
        held = (record.result or {}).get("checkpoint")
        self.cp: dict[str, Any] = dict(held) if isinstance(held, dict) else {}

    async def save(self, percent: float, msg: str, eta: float | None = None) -> None:
        status = methods.TaskStatus(
            task_id=self.record.id,
            state="running",
            percent=round(percent, 1),
            eta=None if eta is None else round(eta, 1),
            msg=msg,
            result={"checkpoint": msgspec.to_builtins(self.cp)},
        )
        await self.jobs.tasks.update(self.node, status)

    async def call(self, work: Any, *, deadline: float | None = None) -> Any:
        return await self.jobs.oob.run(self.node, work, deadline=deadline)

    async def run(self) -> dict[str, Any]:
        spec = parse_spec(self.record.params.get("spec"))
        if "steps" not in self.cp:  # nothing was sent yet: plan (again) from what the BMC has
            await self.save(1.0, "planning: reading firmware inventory and BIOS")
            steps = await self.call(lambda d: plan(d, spec))
            if steps["firmware"]:
                await self.save(2.0, "downloading and checking the images")
            sums = {t.component: t.sha256 for t in spec.firmware}
            timeout = self.jobs.oob.timeout
            for step in steps["firmware"]:
                url, sha = step["image"], sums[step["component"]]
                check = functools.partial(check_image, url, sha, timeout)
                await self.call(lambda _d, check=check: check(), deadline=CHECK_DEADLINE)
            self.cp.update(steps=steps, done=[], current=None, bios_sent=False)
            await self.save(5.0, "images checked")
        steps = self.cp["steps"]
        total = len(steps["firmware"])
        for index, step in enumerate(steps["firmware"]):
            if step["component"] not in self.cp["done"]:
                await self._install(index, total, step)
        if steps["bios"] and not self.cp.get("bios_sent"):
            wanted = {s["attribute"]: s["to"] for s in steps["bios"]}
            await self.call(lambda d: d.set_bios(wanted))
            self.cp["bios_sent"] = True
        await self.save(92.0, "reading back versions and settings")
        left = await self._settle(spec)
        if left:
            raise BmcError("protocol", "after the update: " + "; ".join(left))
        return {
            "node": self.node,
            "dry_run": False,
            "changed": changes(steps),
            "matched": steps["matched"],
        }

    async def _install(self, index: int, total: int, step: dict[str, Any]) -> None:
        component, image = step["component"], step["image"]
        current = self.cp.get("current") or {}
        monitor = current.get("monitor") if current.get("component") == component else None
        if monitor is None and current.get("component") == component:
            # Sent just before a restart, its monitor never stored: installed already?
            have = await self.call(lambda d: {f.component: f.version for f in d.firmware()})
            if have.get(component) == step["to"]:
                self.cp["done"].append(component)
                self.cp["current"] = None
                return
        base = 5.0 + 85.0 * index / total
        sent_here = monitor is None
        if monitor is None:
            self.cp["current"] = {"component": component, "monitor": None}
            await self.save(base, f"sending {component} {step['to']} to the BMC")
            monitor = await self.call(lambda d: d.start_update(image, component))
            self.cp["current"] = {"component": component, "monitor": monitor}
        await self.save(base, f"{component}: the BMC is installing {step['to']}")
        await self._follow(monitor, component, base, 85.0 / total, from_zero=sent_here)
        self.cp["done"].append(component)
        self.cp["current"] = None
        await self.save(base + 85.0 / total, f"{component} installed")

    async def _follow(
        self, monitor: str, component: str, base: float, share: float, *, from_zero: bool
    ) -> None:
        """Wait on the BMC's task monitor, mapping its percent into ours, with an ETA.

        The ETA extrapolates the BMC's percent over time: from 0 % when the update was sent
        here (``from_zero``), from the first reading after a take-over otherwise.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        first: tuple[float, float] | None = (started, 0.0) if from_zero else None
        shown: float | None = None
        while True:
            try:
                p: UpdateProgress = await self.jobs.oob.run_at(
                    await self.jobs.oob.address(self.node), lambda d: d.update_progress(monitor)
                )
            except BmcError as exc:
                if exc.kind not in ("unreachable", "timeout"):
                    raise
                # A BMC flashing its own firmware restarts: silence is not failure (yet).
                p = UpdateProgress(state="running", message=f"the BMC does not answer: {exc}")
            if p.state == "failed":
                raise BmcError("protocol", f"{component}: the BMC's update failed: {p.message}")
            if p.state == "done":
                return
            now = loop.time()
            if now - started > UPDATE_DEADLINE:
                raise BmcError(
                    "timeout", f"{component}: not installed after {UPDATE_DEADLINE:.0f} s"
                )
            eta = None
            if p.percent is not None:
                first = first or (now, p.percent)
                rate = (p.percent - first[1]) / (now - first[0]) if now > first[0] else 0.0
                eta = (100.0 - p.percent) / rate if rate > 0 else None
            if p.percent != shown or p.message:
                shown = p.percent
                pct = "" if p.percent is None else f" {p.percent:.0f}%"
                msg = p.message or f"{component}: the BMC is installing{pct}"
                await self.save(base + share * (p.percent or 0.0) / 100.0, msg, eta)
            await asyncio.sleep(self.jobs.poll)  # the BMC's own pace; it pushes nothing

    async def _settle(self, spec: Any) -> list[str]:
        """What still differs, re-reading once a second for ``3 * bmc_timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3 * self.jobs.oob.timeout
        while True:
            left: list[str] = await self.call(lambda d: differences(d, spec))
            if not left or loop.time() >= deadline:
                return left
            await asyncio.sleep(1.0)  # a BMC applies settings in its own time
