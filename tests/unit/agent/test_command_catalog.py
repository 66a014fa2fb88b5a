"""hwfleet's own agent commands: every one registered by name resolves, and none is imported early.

The catalog (:mod:`hwfleet.agent.commands.catalog`) names handlers as strings, so the
first test resolves every one: a misspelt reference fails here, not on a device. The
second starts a fresh interpreter, builds the agent's runtime as ``hwfleet agent`` does,
and checks that the imaging and network-settings modules are loaded only once a command
that needs them arrives (issue 18: an idle agent must not carry them).
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.unit.agent.agent_kit import sim_runtime

from hwfleet.protocol import methods

#: Seed 001's and hwfleet's own agent methods (the ``standbye.*`` spelling maps onto these).
OWN_METHODS = {
    methods.PING,
    methods.STATUS,
    methods.INVENTORY,
    methods.SCAN,
    methods.TASK_CANCEL,
    methods.DECOM_DISK_ERASE,
    methods.DECOM_QC,
    methods.DECOM_FIRMWARE_SECURE,
    methods.STANDBY_CACHE_IMAGES,
    methods.STANDBY_PREPARE_IMAGE,
    methods.STANDBY_RUN_IMAGE,
    methods.DEVICE_RENAME,
    methods.DEVICE_SET_PASSWORD,
    methods.DEVICE_TRUST_LIST,
    methods.DEVICE_TRUST_ADD,
    methods.DEVICE_TRUST_REMOVE,
    methods.DEVICE_NETWORK_GET,
    methods.DEVICE_NETWORK_SET,
    methods.DEVICE_WIFI_LIST,
    methods.DEVICE_MAINTENANCE,
    "mdp.key",
}


def test_every_registered_method_resolves_to_a_coroutine_and_its_params_struct() -> None:
    registry = sim_runtime(None).registry
    assert set(registry.names()) == OWN_METHODS
    for name in registry.names():
        handler, params = registry.load(name)
        assert inspect.iscoroutinefunction(handler), name
        assert params is None or isinstance(params, type), name
    assert "standbye.run_image" in registry


#: Run in a fresh interpreter: the modules loaded after building the runtime, then after
#: each command (its reply's code or result keys).
PROBE = """
import asyncio, json, sys
from hwfleet.agent.main import build_runtime
from hwfleet.protocol import envelope
from hwfleet.settings import AgentSettings

LAZY = ("hwfleet.agent.imaging", "hwfleet.agent.netconfig", "hwfleet.agent.commands.device",
        "hwfleet.agent.access", "hwfleet.agent.hardware.erase")

def loaded():
    return sorted(m for m in sys.modules if m.startswith(LAZY))

async def main():
    rt = build_runtime(AgentSettings(data_dir=sys.argv[1]))
    out = {"idle": loaded(), "names": rt.registry.names()}
    for method, params in (
        ("standbye.cache_images", {"task_id": "t1", "images": []}),
        ("device.network.get", {}),
    ):
        reply = await rt.registry.dispatch(rt, envelope.command(method, params))
        if isinstance(reply, envelope.Error):
            shown = reply.error.code + ": " + reply.error.msg
        else:
            shown = reply.result
        out[method] = {"reply": shown, "loaded": loaded()}
    print(json.dumps(out))

asyncio.run(main())
"""


def test_a_fresh_agent_imports_imaging_and_network_modules_only_when_called(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PROBE), str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    out = json.loads(done.stdout)
    assert out["idle"] == [], "registering the commands must not import their modules"
    assert methods.STANDBY_CACHE_IMAGES in out["names"]

    cached = out["standbye.cache_images"]
    assert "hwfleet.agent.imaging.commands" in cached["loaded"]
    assert not any(m.startswith("hwfleet.agent.netconfig") for m in cached["loaded"])
    # Its params struct (defined in the imaging module) ran and refused an empty list.
    assert (
        cached["reply"].startswith("bad_params")
        and "must name at least one image" in (cached["reply"])
    )

    network = out["device.network.get"]
    assert "hwfleet.agent.netconfig.backend" in network["loaded"]
    assert network["reply"] == "bad_params: interface: name the interface on a real device"
