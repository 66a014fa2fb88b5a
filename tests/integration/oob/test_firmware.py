"""decom.firmware_secure through Redfish as a task: plan, checksum, SimpleUpdate and its task
monitor, BIOS, read-back; progress on the row, and resumption by another owner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from tests.oob_support.emulators import Redfish

from hwfleet.bus.memory import MemoryBus
from hwfleet.controller.events import EventPublisher
from hwfleet.controller.tasks import TaskService
from hwfleet.oob.driver import BmcAddress, BmcError
from hwfleet.oob.fwjob import FirmwareJobs
from hwfleet.oob.service import OobService
from hwfleet.protocol import methods
from hwfleet.store import Store
from hwfleet.store.records import TaskRecord

NODE = "node-fw"


def spec(url: str, sha: str) -> dict[str, object]:
    return {
        "bios": {"ProcTurboMode": "Disabled", "BootMode": "Uefi"},
        "firmware": [
            {"component": "BIOS", "version": "1.2.0", "image": url, "sha256": sha},
            {"component": "BMC", "version": "2.0.0"},
        ],
    }


class Tasks(TaskService):
    """The controller's task service, telling the test about every row change it makes."""

    def __init__(self, store: Store) -> None:
        super().__init__(store, None, EventPublisher(store, MemoryBus()))  # type: ignore[arg-type]
        self.changed = asyncio.Condition()
        self.latest: dict[str, TaskRecord] = {}

    async def update(self, uuid: str, status: methods.TaskStatus) -> TaskRecord:
        record = await super().update(uuid, status)
        async with self.changed:
            self.latest[record.id] = record
            self.changed.notify_all()
        return record

    async def until(
        self, task_id: str, check: Callable[[TaskRecord], bool], timeout: float = 30
    ) -> TaskRecord:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(
                lambda: task_id in self.latest and check(self.latest[task_id])
            )
            return self.latest[task_id]


@pytest.fixture
def tasks(store: Store) -> Tasks:
    return Tasks(store)


@pytest.fixture
async def jobs(oob: OobService, tasks: Tasks) -> AsyncIterator[FirmwareJobs]:
    running = FirmwareJobs(oob, tasks, poll=0.05)
    try:
        yield running
    finally:
        await running.close()


async def set_bmc(oob: OobService, redfish: Redfish) -> None:
    await oob.set_bmc(
        NODE,
        BmcAddress(
            driver="redfish", address=redfish.url, username="admin", password=redfish.password
        ),
    )


async def firmware_versions(oob: OobService) -> dict[str, str]:
    items = await oob.run(NODE, lambda d: d.firmware())
    return {f.component: f.version for f in items}


async def apply(jobs: FirmwareJobs, tasks: Tasks, document: Any) -> TaskRecord:
    record = await jobs.start(NODE, document)
    assert record.params["via"] == "bmc" and record.method == "decom.firmware_secure"
    return await tasks.until(record.id, lambda t: t.state in ("complete", "error"))


def in_flight(t: TaskRecord) -> bool:
    """The update was sent and its BMC task monitor is on the row."""
    return bool((checkpoint(t).get("current") or {}).get("monitor"))


def checkpoint(t: TaskRecord) -> dict[str, Any]:
    held: dict[str, Any] = (t.result or {}).get("checkpoint") or {}
    return held


async def test_dry_run_then_apply_then_all_matched(
    oob: OobService, jobs: FirmwareJobs, tasks: Tasks, redfish: Redfish, images: tuple[str, str]
) -> None:
    await set_bmc(oob, redfish)
    url, sha = images
    planned = await oob.firmware_plan(NODE, spec(url, sha))
    assert planned["dry_run"] and planned["changed"] == []
    assert planned["plan"]["firmware"] == [
        {"component": "BIOS", "from": "1.0.0", "to": "1.2.0", "image": url}
    ]
    assert planned["plan"]["bios"] == [
        {"attribute": "ProcTurboMode", "from": "Enabled", "to": "Disabled"}
    ]
    assert (await firmware_versions(oob))["BIOS"] == "1.0.0"  # the dry run changed nothing

    done = await apply(jobs, tasks, spec(url, sha))
    assert done.state == "complete", done.msg
    assert done.percent == 100.0
    report = done.result or {}
    assert report["changed"] == [
        {"firmware": "BIOS", "from": "1.0.0", "to": "1.2.0"},
        {"bios": "ProcTurboMode", "from": "Enabled", "to": "Disabled"},
    ]
    assert {"firmware": "BMC", "version": "2.0.0"} in report["matched"]
    assert "checkpoint" not in report  # the report replaced the working state
    assert (await firmware_versions(oob))["BIOS"] == "1.2.0"
    bios = await oob.run(NODE, lambda d: d.bios())
    assert bios["ProcTurboMode"] == "Disabled"

    again = await apply(jobs, tasks, spec(url, sha))
    assert again.state == "complete" and (again.result or {})["changed"] == []
    assert len((again.result or {})["matched"]) == 4
    assert redfish.state()["updates"] == 1  # matched components are not sent again


async def test_bad_checksum_changes_nothing(
    oob: OobService, jobs: FirmwareJobs, tasks: Tasks, redfish: Redfish, images: tuple[str, str]
) -> None:
    await set_bmc(oob, redfish)
    url, _ = images
    failed = await apply(jobs, tasks, spec(url, "0" * 64))
    assert failed.state == "error"
    assert "SHA-256" in (failed.msg or "") and "nothing was changed" in (failed.msg or "")
    assert (await firmware_versions(oob))["BIOS"] == "1.0.0"
    bios = await oob.run(NODE, lambda d: d.bios())
    assert bios["ProcTurboMode"] == "Enabled"
    assert redfish.state()["updates"] == 0


async def test_bad_specs_are_refused(
    oob: OobService, jobs: FirmwareJobs, tasks: Tasks, redfish: Redfish
) -> None:
    await set_bmc(oob, redfish)
    with pytest.raises(BmcError, match="no firmware component 'NIC'"):
        await oob.firmware_plan(NODE, {"firmware": [{"component": "NIC", "version": "9"}]})
    with pytest.raises(BmcError, match="names no BIOS setting"):
        await jobs.start(NODE, {})  # refused before any row is written
    with pytest.raises(BmcError, match="no attribute 'Nope'"):
        await oob.firmware_plan(NODE, {"bios": {"Nope": 1}})
    failed = await apply(
        jobs, tasks, {"firmware": [{"component": "BIOS", "version": "9", "image": "http://x/y"}]}
    )
    assert failed.state == "error" and "sha256" in (failed.msg or "")


async def test_progress_and_a_new_owner_resumes_the_wait(
    oob: OobService, tasks: Tasks, redfish: Redfish, images: tuple[str, str]
) -> None:
    """A BMC that takes its time: percent and ETA on the row; the owner stops mid-flash and
    another takes the task over from its checkpoint without sending the image again."""
    await set_bmc(oob, redfish)
    redfish.control("slow_update", {"on": True})
    url, sha = images
    first = FirmwareJobs(oob, tasks, poll=0.05)
    record = await first.start(NODE, spec(url, sha))
    flashing = await tasks.until(record.id, in_flight)
    monitor = checkpoint(flashing)["current"]["monitor"]
    assert monitor and monitor.endswith("/TaskService/Tasks/1")
    redfish.control("task", {"id": "1", "percent": 40})
    moving = await tasks.until(record.id, lambda t: (t.percent or 0) > 30)
    assert moving.state == "running" and moving.eta is not None and moving.eta > 0
    assert "installing 40%" in (moving.msg or "")

    fresh = FirmwareJobs(oob, tasks, stale=60, poll=0.05)
    assert await fresh.take_over() == []  # its owner is alive: nobody else takes it
    await fresh.close()
    await first.close()  # the controller stops mid-flash
    async with oob.store.tx() as tx:
        left = await tx.tasks.get(record.id)
    assert left is not None and left.state == "running"

    second = FirmwareJobs(oob, tasks, stale=0.001, poll=0.05)
    try:
        assert await second.take_over() == [record.id]
        redfish.control("task", {"id": "1", "finish": True})
        done = await tasks.until(record.id, lambda t: t.state in ("complete", "error"))
    finally:
        await second.close()
    assert done.state == "complete", done.msg
    assert {"firmware": "BIOS", "from": "1.0.0", "to": "1.2.0"} in (done.result or {})["changed"]
    assert redfish.state()["updates"] == 1  # the wait resumed; the image was not sent again
    assert (await firmware_versions(oob))["BIOS"] == "1.2.0"


async def test_an_update_the_bmc_fails_ends_the_task_with_its_message(
    oob: OobService, jobs: FirmwareJobs, tasks: Tasks, redfish: Redfish, images: tuple[str, str]
) -> None:
    await set_bmc(oob, redfish)
    redfish.control("slow_update", {"on": True})
    url, sha = images
    record = await jobs.start(NODE, spec(url, sha))
    await tasks.until(record.id, in_flight)
    with pytest.raises(BmcError, match="still running"):
        await jobs.start(NODE, spec(url, sha))  # one firmware task per node at a time
    redfish.control("task", {"id": "1", "fail": "flash verify error at block 7"})
    failed = await tasks.until(record.id, lambda t: t.state in ("complete", "error"))
    assert failed.state == "error"
    assert "BIOS: the BMC's update failed: flash verify error at block 7" in (failed.msg or "")
    bios = await oob.run(NODE, lambda d: d.bios())
    assert bios["ProcTurboMode"] == "Enabled"  # BIOS settings wait for the firmware
