"""``task`` ``methods.getBootProfile.<nodeid>`` served by the engine, as the boot service asks."""

from __future__ import annotations

import pytest

from hwfleet.boot.profiles import BootProfile, BusGraphProfiles
from hwfleet.bus.base import RpcError
from hwfleet.controller.app import Controller
from hwfleet.sim.fleet import SimFleet

GRAPH = {
    "friendlyName": "Boot profile test",
    "injectableName": "Graph.Test.Boot",
    "options": {"defaults": {"bootProfile": {"profile": "discovery", "options": {"stage": 1}}}},
    "tasks": [
        {"label": "a", "taskName": "Task.Hwfleet.Wait"},
        {"label": "b", "taskName": "Task.Hwfleet.Wait", "waitOn": {"a": "succeeded"}},
    ],
}


async def test_boot_profile_follows_the_active_graph(
    controller: Controller, fleet: SimFleet
) -> None:
    bus, engine = controller.bus, controller.graphs.engine
    node = str(fleet.devices[0].runtime.info.uuid)
    profiles = BusGraphProfiles(bus)
    assert await bus.call("task", f"getBootProfile.{node}", {}) == {
        "profile": None,
        "options": {},
    }
    assert await profiles.boot_profile(node) is None
    await engine.define_graph(GRAPH)

    # The definition's defaults (task b's own profile is not the current step's).
    later = {"profile": "installer", "options": {"image": "debian-12"}}
    graph_id = await engine.run(
        GRAPH["injectableName"], node, {"a": {"seconds": 30}, "b": {"bootProfile": later}}
    )
    assert await profiles.boot_profile(node) == BootProfile("discovery", {"stage": "1"})
    await engine.cancel(graph_id)
    assert await profiles.boot_profile(node) is None

    # The run's defaults override the definition's; the current task's own option wins.
    run = {"defaults": {"bootProfile": "local"}, "a": {"seconds": 30}}
    graph_id = await engine.run(GRAPH["injectableName"], node, run)
    assert await profiles.boot_profile(node) == BootProfile("local", {})
    await engine.cancel(graph_id)
    run["a"] = {"seconds": 30, "bootProfile": later}
    graph_id = await engine.run(GRAPH["injectableName"], node, run)
    reply = await bus.call("task", f"getBootProfile.{node}", {})
    assert reply == {"profile": "installer", "options": {"image": "debian-12"}}
    assert await profiles.boot_profile(node) == BootProfile("installer", {"image": "debian-12"})
    await engine.cancel(graph_id)

    # A malformed option is an error reply naming it; the engine keeps serving.
    graph_id = await engine.run(
        GRAPH["injectableName"], node, {"a": {"seconds": 30, "bootProfile": {"options": 3}}}
    )
    with pytest.raises(RpcError, match=r"tasks\.a\.options\.bootProfile") as refused:
        await bus.call("task", f"getBootProfile.{node}", {})
    assert refused.value.code == "bad_params"
    await engine.cancel(graph_id)
    assert await profiles.boot_profile(node) is None
