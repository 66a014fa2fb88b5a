"""Long commands: accepted at once, progress reported, the end recorded exactly once."""

from __future__ import annotations

import asyncio

import pytest

from hwfleet.bus import Delivery, decode_object
from hwfleet.controller.app import Controller
from hwfleet.protocol.errors import RemoteError
from hwfleet.protocol.status import StatusId, describe
from hwfleet.sim.fleet import SimFleet


async def test_qc_task_runs_to_completion(controller: Controller, fleet: SimFleet) -> None:
    device = fleet.devices[0].runtime
    inventory = device.hardware.inventory()
    spec = {"nic_count": len(inventory.interfaces), "macs": [inventory.interfaces[0].mac]}
    record = await controller.tasks.start(device.info.uuid, "decom.qc", {"spec": spec})
    assert record.state in ("running", "complete")
    done = await controller.tasks.wait(record.id, timeout=10)
    assert done is not None and done.state == "complete", done
    assert done.percent == 100.0
    assert done.result is not None and done.result["passed"] is True
    async with controller.store.tx() as tx:
        keys = [e.routing_key for e in await tx.events.list()]
    assert keys.count(f"task.finished.{record.id}") == 1


async def test_failed_qc_ends_in_error_with_the_reason(
    controller: Controller, fleet: SimFleet
) -> None:
    device = fleet.devices[1].runtime
    record = await controller.tasks.start(device.info.uuid, "decom.qc", {"spec": {"nic_count": 99}})
    done = await controller.tasks.wait(record.id, timeout=10)
    assert done is not None and done.state == "error"
    assert done.msg is not None and "nic_count" in done.msg


async def test_simulated_device_refuses_disk_erase(controller: Controller, fleet: SimFleet) -> None:
    uuid = fleet.devices[2].runtime.info.uuid
    with pytest.raises(RemoteError, match="simulated"):
        await controller.tasks.start(uuid, "decom.disk_erase", {"devices": ["sda"]})
    async with controller.store.tx() as tx:
        tasks = await tx.tasks.list(device_uuid=uuid)
    assert [t.state for t in tasks] == ["error"]


async def test_status_reports_uptime_and_state(controller: Controller, fleet: SimFleet) -> None:
    uuid = fleet.devices[0].runtime.info.uuid
    status = await controller.devices.call(uuid, "status")
    assert status["st_id"] == 0 and status["uptime"] >= 0 and status["tasks"] == []


async def test_task_id_that_would_not_route_is_refused_over_rest(
    controller: Controller, fleet: SimFleet
) -> None:
    """`task.finished.a.b` would miss every `task.finished.*` subscriber: refuse the id."""
    import httpx

    uuid = fleet.devices[0].runtime.info.uuid
    headers = {"Authorization": f"Bearer {controller.operator_token}"}
    async with httpx.AsyncClient(base_url=controller.api_url, headers=headers) as http:
        reply = await http.post(
            f"/api/v1/devices/{uuid}/run",
            json={"method": "decom.qc", "params": {"task_id": "a.b", "spec": {}}},
        )
    assert reply.status_code == 422 and "routing-key word" in reply.text
    async with controller.store.tx() as tx:
        assert await tx.tasks.list(device_uuid=uuid) == []  # refused before the row


async def test_device_status_follows_its_task_on_the_row_and_in_progress(
    controller: Controller, fleet: SimFleet
) -> None:
    """The agent's st_id travels with its task reports: the device's row says running (16)
    while the task runs and completed (64) or aborted (128) after it, and dashboards get
    the new words in the progress message of the report that changed them, once."""
    seen: list[tuple[str, int]] = []
    four = asyncio.Event()

    async def watch(d: Delivery) -> None:
        body = decode_object(d.body)
        if "st_id" in body:
            seen.append((str(body["state"]), int(body["st_id"])))
            assert body["st_words"] == describe(int(body["st_id"]))
            if len(seen) >= 4:
                four.set()

    await controller.bus.subscribe("progress", "task.#", watch)
    device = fleet.devices[0].runtime
    uuid = device.info.uuid
    async with controller.store.tx() as tx:
        before = await tx.devices.get(uuid)
    assert before is not None and before.st_id == StatusId.IDLE
    inventory = device.hardware.inventory()
    spec = {"nic_count": len(inventory.interfaces), "macs": [inventory.interfaces[0].mac]}
    record = await controller.tasks.start(uuid, "decom.qc", {"spec": spec})
    done = await controller.tasks.wait(record.id, timeout=10)
    assert done is not None and done.state == "complete", done
    async with controller.store.tx() as tx:
        after = await tx.devices.get(uuid)
    assert after is not None and after.st_id == StatusId.COMPLETED

    failed = await controller.tasks.start(uuid, "decom.qc", {"spec": {"nic_count": 99}})
    done = await controller.tasks.wait(failed.id, timeout=10)
    assert done is not None and done.state == "error"
    async with controller.store.tx() as tx:
        after = await tx.devices.get(uuid)
    assert after is not None and after.st_id == StatusId.ABORTED
    # Progress is published before the waiter wakes; the subscriber may still be behind.
    await asyncio.wait_for(four.wait(), 10)
    assert seen == [
        ("running", StatusId.RUNNING),
        ("complete", StatusId.COMPLETED),
        ("running", StatusId.RUNNING),
        ("error", StatusId.ABORTED),
    ]
