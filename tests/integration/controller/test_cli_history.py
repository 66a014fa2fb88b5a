"""History on the command line (tasks by target, state and age; events since) and the
retention pruner: a real controller, simulated devices over loopback, the CLI."""

from __future__ import annotations

import json
from datetime import timedelta

from hwfleet.controller.app import Controller
from hwfleet.controller.events import utcnow
from hwfleet.sim.fleet import SimFleet

from .conftest import cli


async def test_tasks_by_target_state_and_since(controller: Controller, fleet: SimFleet) -> None:
    first, second = (d.runtime.info for d in fleet.devices[:2])
    code, out, err = await cli(controller, "run", first.uuid, "decom.qc", "--wait", "--json")
    assert code == 0, err
    spec = 'spec={"nic_count": 99}'
    code, out, err = await cli(
        controller, "run", second.uuid, "decom.qc", "--param", spec, "--wait", "--json"
    )
    assert code == 2
    failed = json.loads(out)["task"]["id"]
    # An old finished task of the first device, from before the window.
    async with controller.store.tx() as tx:
        old = utcnow() - timedelta(days=2)
        await tx.tasks.create("old-task", first.uuid, "decom.qc", {}, old)
        await tx.tasks.update("old-task", state="error", msg="long ago", at=old)

    async def ids(*args: str) -> list[str]:
        code, out, err = await cli(controller, "tasks", *args, "--json")
        assert code == 0, err
        return [t["id"] for t in json.loads(out)]

    assert len(await ids()) == 3
    assert await ids("--state", "error", "--since", "1h") == [failed]
    assert await ids("--device", second.name, "--since", "1h") == [failed]
    assert await ids("--device", first.uuid[:8], "--state", "error") == ["old-task"]
    assert len(await ids("--device", f"{first.name},{second.name}", "--since", "1h")) == 2
    code, _, err = await cli(controller, "tasks", "--state", "bogus")
    assert code == 1 and "task state must be one of" in err
    code, _, err = await cli(controller, "tasks", "--since", "yesterday")
    assert code == 1 and "neither a duration" in err


async def test_events_since_and_the_pruner_counts(controller: Controller) -> None:
    now = utcnow()
    async with controller.store.tx() as tx:
        await tx.events.add("test.old", {"n": 1}, at=now - timedelta(days=40))
        await tx.events.add("test.new", {"n": 2}, at=now)
        await tx.tasks.create("done-old", "dev", "decom.qc", {}, now - timedelta(days=40))
        await tx.tasks.update("done-old", state="complete", at=now - timedelta(days=40))
        await tx.tasks.create("running-old", "dev", "decom.qc", {}, now - timedelta(days=40))
        await tx.tasks.update("running-old", state="running", at=now - timedelta(days=40))
    code, out, err = await cli(
        controller, "events", "--pattern", "test.*", "--since", "1d", "--json"
    )
    assert code == 0, err
    assert [e["routing_key"] for e in json.loads(out)] == ["test.new"]

    counts = await controller.pruner.prune_once()
    assert counts == {"events": 1, "tasks": 1}
    async with controller.store.tx() as tx:
        left = {t.id for t in await tx.tasks.list()}
        keys = [e.routing_key for e in await tx.events.list(pattern="test.*")]
    assert left == {"running-old"}, "a running task is never pruned"
    assert keys == ["test.new"]
    assert await controller.pruner.prune_once() == {"events": 0, "tasks": 0}
