"""``hwfleet tasks cancel``: the agent stops a long task at its next safe point and reports
``error`` "cancelled" — a real controller, a simulated device over loopback, the CLI."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hwfleet.agent.commands.decom import QcParams
from hwfleet.agent.runtime import AgentRuntime
from hwfleet.agent.tasks import Report
from hwfleet.controller.app import Controller
from hwfleet.protocol import methods
from hwfleet.sim.fleet import SimFleet

from .conftest import cli

#: Seconds one step of the stand-in long task takes (the work itself, not synchronisation).
STEP = 0.02
STEPS = 50_000  # far longer than any test: only a cancel ends it


def slow_qc(steps_done: list[int], started: asyncio.Event) -> Any:
    """A decom.qc that works in many small steps, reporting progress after each one."""

    async def handler(rt: AgentRuntime, params: QcParams) -> dict[str, Any]:
        async def work(report: Report) -> dict[str, Any]:
            for step in range(STEPS):
                await report(100 * step / STEPS, None)  # the safe point
                steps_done.append(step)
                started.set()
                await asyncio.sleep(STEP)  # one step of work
            return {}

        return rt.tasks.start(params.task_id, methods.DECOM_QC, work)

    return handler


async def test_cancel_stops_the_task_at_a_safe_point(
    controller: Controller, fleet: SimFleet, deadline: float
) -> None:
    runtime = fleet.devices[0].runtime
    steps: list[int] = []
    started = asyncio.Event()
    runtime.registry.add(methods.DECOM_QC, slow_qc(steps, started), QcParams)
    code, out, err = await cli(controller, "run", runtime.info.uuid, "decom.qc", "--json")
    assert code == 0, err
    task_id = json.loads(out)["task"]["id"]
    async with asyncio.timeout(deadline):
        await started.wait()

    code, out, err = await cli(controller, "tasks", "cancel", task_id[:8], "--wait", "--json")
    assert code == 0, err
    task = json.loads(out)
    assert task["id"] == task_id
    assert (task["state"], task["msg"]) == ("error", "cancelled")
    assert runtime.tasks.running() == []
    stopped_at = len(steps)
    assert stopped_at < STEPS
    assert runtime.status.status.error_label == "cancelled"

    code, out, err = await cli(controller, "tasks", "cancel", task_id)
    assert code == 1 and "already ended: error" in err
    code, out, err = await cli(controller, "tasks", "cancel", "no-such-task")
    assert code == 1 and "no task no-such-task" in err
    code, out, err = await cli(controller, "tasks", "--state", "error", "--json")
    assert [t["id"] for t in json.loads(out)] == [task_id]
