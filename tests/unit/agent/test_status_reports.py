"""What a device reports as ``st_id`` while it works (DESIGN §7, seed 004), through its commands.

Each transition is read where an operator sees it: the ``status`` command,
the handshake and the discovery metadata all come from the one status rule.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from hwfleet.agent.discovery import metadata_for
from hwfleet.agent.runtime import AgentRuntime
from hwfleet.agent.tasks import Report
from hwfleet.protocol.status import StatusId

from .agent_kit import Failed, call, sim_runtime


async def status_of(rt: AgentRuntime) -> dict[str, Any]:
    reply: dict[str, Any] = await call(rt, "status")
    assert reply["st_id"] == rt.handshake()["st_id"] == metadata_for(rt, "127.1.0.1", 1).st_id
    return reply


async def finished(rt: AgentRuntime) -> None:
    """Until the running task's own coroutine (``task-<id>`` in this loop) has ended."""
    names = {f"task-{task_id}" for task_id in rt.tasks.running()}
    running = [t for t in asyncio.all_tasks() if t.get_name() in names]
    async with asyncio.timeout(5):
        await asyncio.gather(*running)
    assert rt.tasks.running() == []


async def test_a_long_task_reports_16_with_progress_then_64(tmp_path: Path) -> None:
    rt = sim_runtime(tmp_path)
    assert (await status_of(rt))["st_id"] == StatusId.IDLE
    halfway, finish = asyncio.Event(), asyncio.Event()

    async def work(report: Report) -> dict[str, Any]:
        await report(40.0, None)
        halfway.set()
        await finish.wait()
        return {}

    rt.tasks.start("t-1", "test.work", work)
    async with asyncio.timeout(5):
        await halfway.wait()
    reply = await status_of(rt)
    assert (reply["st_id"], reply["st_prog"], reply["tasks"]) == (16, 40.0, ["t-1"])
    assert metadata_for(rt, "127.1.0.1", 1).st_prog == 40.0
    finish.set()
    await finished(rt)
    reply = await status_of(rt)
    assert (reply["st_id"], reply["error_label"]) == (StatusId.COMPLETED, None)


async def test_a_qc_that_passes_ends_completed_and_one_that_fails_aborted(tmp_path: Path) -> None:
    rt = sim_runtime(tmp_path)
    await call(rt, "decom.qc", {"task_id": "qc-1", "spec": {"min_memory_mb": 1}})
    await finished(rt)
    assert (await status_of(rt))["st_id"] == StatusId.COMPLETED

    await call(rt, "decom.qc", {"task_id": "qc-2", "spec": {"min_memory_mb": 10**9}})
    await finished(rt)
    reply = await status_of(rt)
    assert reply["st_id"] == StatusId.ABORTED
    assert reply["error_label"] == "QC failed: min_memory_mb"
    assert metadata_for(rt, "127.1.0.1", 1).error_label == "QC failed: min_memory_mb"

    await call(rt, "decom.qc", {"task_id": "qc-3", "spec": {}})
    await finished(rt)
    reply = await status_of(rt)
    assert (reply["st_id"], reply["error_label"]) == (StatusId.COMPLETED, None), (
        "a new task clears it"
    )


async def test_a_scan_reports_minus_2_while_it_reads_the_hardware(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = sim_runtime(tmp_path)
    seen: list[int] = []
    read = rt.hardware.inventory

    def inventory_watched() -> Any:
        seen.append(rt.st_id())
        return read()

    monkeypatch.setattr(rt.hardware, "inventory", inventory_watched)
    await call(rt, "scan", {"operationid": 1})
    assert seen == [StatusId.SCANNING]
    assert (await status_of(rt))["st_id"] == StatusId.IDLE


async def test_maintenance_reports_minus_1_refuses_work_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    rt = sim_runtime(tmp_path)
    assert await call(rt, "device.maintenance", {"on": True}) == {"maintenance": True, "st_id": -1}
    assert (await status_of(rt))["st_id"] == StatusId.MAINTENANCE
    assert await call(rt, "ping", {"x": 1}) == {"x": 1}, "short commands are still answered"
    for method, params in (
        ("scan", {"operationid": 2}),
        ("decom.qc", {"task_id": "qc-4", "spec": {}}),
    ):
        with pytest.raises(Failed) as refused:
            await call(rt, method, params)
        assert refused.value.code == "refused"
        assert "in maintenance" in refused.value.msg
        assert "hwfleet device maintenance off" in refused.value.msg
    assert rt.tasks.running() == []

    restarted = sim_runtime(tmp_path)
    assert (await status_of(restarted))["st_id"] == StatusId.MAINTENANCE
    await call(restarted, "device.maintenance", {"on": False})
    assert (await status_of(restarted))["st_id"] == StatusId.IDLE
    await call(restarted, "decom.qc", {"task_id": "qc-5", "spec": {}})
    await finished(restarted)
    assert (await status_of(restarted))["st_id"] == StatusId.COMPLETED


async def test_maintenance_during_a_task_shows_minus_1_and_lets_the_task_finish(
    tmp_path: Path,
) -> None:
    rt = sim_runtime(tmp_path)
    started, finish = asyncio.Event(), asyncio.Event()

    async def work(report: Report) -> dict[str, Any]:
        started.set()
        await finish.wait()
        return {}

    rt.tasks.start("t-2", "test.work", work)
    async with asyncio.timeout(5):
        await started.wait()
    await call(rt, "device.maintenance", {"on": True})
    assert (await status_of(rt))["st_id"] == StatusId.MAINTENANCE
    finish.set()
    await finished(rt)
    assert (await status_of(rt))["st_id"] == StatusId.MAINTENANCE
    await call(rt, "device.maintenance", {"on": False})
    assert (await status_of(rt))["st_id"] == StatusId.COMPLETED


async def test_maintenance_params_are_checked(tmp_path: Path) -> None:
    rt = sim_runtime(tmp_path)
    with pytest.raises(Failed) as bad:
        await call(rt, "device.maintenance", {"on": "yes"})
    assert bad.value.code == "bad_params"
