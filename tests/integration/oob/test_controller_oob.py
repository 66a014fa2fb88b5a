"""Out-of-band management inside a running controller, driven as a user would drive it:
the CLI, the REST API and the bus, against sushy-tools' Redfish emulator."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.oob_support.emulators import Redfish

from hwfleet.bus.base import Delivery
from hwfleet.controller.app import Controller
from hwfleet.settings import ServerSettings

HWFLEET = [sys.executable, "-m", "hwfleet.cli"]
NODE = str(uuid.UUID(int=7))


def controller_settings(tmp_path: Path, **extra: Any) -> ServerSettings:
    """An embedded controller on loopback ports the OS picks, with short BMC timeouts."""
    fields: dict[str, Any] = {
        "data_dir": str(tmp_path / "controller"),
        "agent_listen": "127.0.0.1:0",
        "api_listen": "127.0.0.1:0",
        "bus": "memory://",
        "bmc_timeout": 3.0,
    }
    return ServerSettings(**{**fields, **extra})


@pytest.fixture
async def ctl(tmp_path: Path) -> AsyncIterator[Controller]:
    controller = Controller(controller_settings(tmp_path, poller_tick=0.2))
    await controller.start()
    try:
        yield controller
    finally:
        await controller.close()


async def cli(
    ctl: Controller, *args: str, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *HWFLEET,
        *args,
        "--api",
        ctl.api_url,
        "--data-dir",
        ctl.settings.data_dir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


def api(ctl: Controller) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=ctl.api_url, headers={"Authorization": f"Bearer {ctl.operator_token}"}, timeout=30
    )


async def set_bmc(ctl: Controller, redfish: Redfish, password: str | None = None) -> None:
    code, out, err = await cli(
        ctl,
        "bmc",
        "set",
        NODE,
        "--redfish",
        redfish.url,
        "--username",
        redfish.username,
        "--json",
        env={"HWFLEET_BMC_PASSWORD": password or redfish.password},
    )
    assert code == 0, err
    shown = json.loads(out)
    assert shown["driver"] == "redfish" and shown["address"] == redfish.url
    assert redfish.password not in out and "password" not in shown


async def wait_for(check: Any, seconds: float = 20.0) -> Any:
    """Poll ``check()`` (a coroutine function) until it returns something truthy."""
    async with asyncio.timeout(seconds):
        while True:
            value = await check()
            if value:
                return value
            await asyncio.sleep(0.1)  # polling the API: nothing to wait on in-process


async def test_cli_power_sel_sensors(ctl: Controller, redfish: Redfish) -> None:
    await set_bmc(ctl, redfish)
    code, out, err = await cli(ctl, "power", "cycle", NODE, "--json")
    assert code == 0, err
    assert json.loads(out) == {NODE: {"power": "on"}}
    code, out, _ = await cli(ctl, "power", "off", NODE, "--json")
    assert json.loads(out) == {NODE: {"power": "off"}}
    code, out, _ = await cli(ctl, "power", "status", NODE, "--json")
    assert json.loads(out) == {NODE: {"power": "off"}}
    redfish.control("sel", {"Message": "PSU 1 lost input", "Severity": "Warning"})
    code, out, _ = await cli(ctl, "sel", NODE, "--json")
    assert [e["message"] for e in json.loads(out)] == ["PSU 1 lost input"]
    code, out, _ = await cli(ctl, "sensors", NODE, "--json")
    assert {s["name"] for s in json.loads(out)} >= {"CPU Temp", "Fan 1"}
    # An unknown target and a node without a BMC: clear errors, exit 1.
    code, out, err = await cli(ctl, "power", "status", "no-such-node", "--json")
    assert code == 1 and "no device has the uuid, name or serial 'no-such-node'" in err
    other = str(uuid.UUID(int=8))
    code, out, _ = await cli(ctl, "power", "status", other, "--json")
    assert code == 1 and "has no BMC" in json.loads(out)[other]["error"]


async def test_wrong_password_shows_on_the_node_and_never_leaks(
    ctl: Controller, redfish: Redfish, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "not-the-BMC-password-42"
    await set_bmc(ctl, redfish, password=wrong)
    code, out, err = await cli(ctl, "power", "status", NODE, "--json")
    assert code == 1 and "auth" in json.loads(out)[NODE]["error"]
    async with api(ctl) as client:
        shown = (await client.get(f"/api/v1/nodes/{NODE}/bmc")).json()
        pollers = (await client.get("/api/v1/pollers", params={"node": NODE})).json()
    assert "auth" in shown["last_error"]
    everything = out + err + json.dumps(shown) + json.dumps(pollers) + caplog.text
    assert wrong not in everything and redfish.username + ":" not in everything


async def test_pollers_data_alerts_cache_and_backoff(ctl: Controller, redfish: Redfish) -> None:
    alerts: asyncio.Queue[Delivery] = asyncio.Queue()

    async def on_alert(delivery: Delivery) -> None:
        await alerts.put(delivery)

    announced: asyncio.Queue[Delivery] = asyncio.Queue()

    async def on_event(delivery: Delivery) -> None:
        await announced.put(delivery)

    await ctl.bus.subscribe("task", "poller.alert.*", on_alert)
    # Dashboards and other consumers follow the events exchange, not the task channel.
    await ctl.bus.subscribe("events", "poller.alert.#", on_event)
    await set_bmc(ctl, redfish)
    async with api(ctl) as client:
        pollers = (await client.get("/api/v1/pollers", params={"node": NODE})).json()
        assert {(p["type"], p["interval"]) for p in pollers} == {
            ("sel", 60.0),
            ("sdr", 60.0),
            ("chassis", 15.0),
        }
        sdr = next(p["id"] for p in pollers if p["type"] == "sdr")

        async def polled() -> Any:
            body = (await client.get(f"/api/v1/pollers/{sdr}/data")).json()
            return body if body["data"] else None

        first = await wait_for(polled)
        assert any(s["name"] == "CPU Temp" and s["value"] == 41 for s in first["data"])

        # Through the bus, as a graph task would ask (seed 003 requestPollerCache).
        cached = await ctl.bus.call("task", "requestPollerCache", {"pollerId": sdr})
        assert cached["pollers"][0]["data"] == first["data"]

        # A hot CPU: one alert on the task exchange, and an event.
        redfish.control("thermal", {"cpu": 97})
        r = await client.patch(f"/api/v1/pollers/{sdr}", json={"interval": 1})
        assert r.status_code == 200
        delivery = await asyncio.wait_for(alerts.get(), 20)
        assert delivery.routing_key == f"poller.alert.{NODE}"
        alert = json.loads(delivery.body)
        assert alert["type"] == "sensor" and alert["sensor"] == "CPU Temp"
        events = (await client.get("/api/v1/events", params={"pattern": "poller.alert.#"})).json()
        assert any(e["routing_key"] == f"poller.alert.{NODE}" for e in events)
        event = await asyncio.wait_for(announced.get(), 20)
        assert event.routing_key == f"poller.alert.{NODE}"
        body = json.loads(event.body)
        assert body["data"]["sensor"] == "CPU Temp" and body["data"]["node"] == NODE
        assert body["id"] in {e["id"] for e in events}  # the announcement names the record

        # The BMC goes away: the poller records the error and backs off (interval x 2^n).
        redfish.stop()

        async def failing() -> Any:
            p = (await client.get(f"/api/v1/pollers/{sdr}")).json()
            return p if p["failures"] >= 2 else None

        broken = await wait_for(failing, 30)
        assert broken["last_error"].split(":")[0] in ("unreachable", "timeout")
        assert redfish.password not in json.dumps(broken)
        # The latest good data is still served.
        assert (await client.get(f"/api/v1/pollers/{sdr}/data")).json()["data"]


async def test_task_channel_power_command(ctl: Controller, redfish: Redfish) -> None:
    await set_bmc(ctl, redfish)
    results: asyncio.Queue[Delivery] = asyncio.Queue()

    async def on_result(delivery: Delivery) -> None:
        await results.put(delivery)

    await ctl.bus.subscribe("task", "ipmi.command.*.result.#", on_result)
    await ctl.bus.publish("task", "ipmi.command.power.graph1", {"node": NODE, "action": "on"})
    got = await asyncio.wait_for(results.get(), 20)
    assert got.routing_key == "ipmi.command.power.result.graph1"
    assert json.loads(got.body) == {"node": NODE, "command": "power", "result": "on"}
    await ctl.bus.publish("task", "ipmi.command.sel.graph2", {"node": "nobody"})
    got = await asyncio.wait_for(results.get(), 20)
    assert "has no BMC" in json.loads(got.body)["error"]


async def test_run_firmware_secure_goes_to_the_bmc(ctl: Controller, redfish: Redfish) -> None:
    await set_bmc(ctl, redfish)
    bios = json.dumps({"ProcTurboMode": "Disabled"})
    code, out, err = await cli(
        ctl,
        "run",
        NODE,
        "decom.firmware_secure",
        "--param",
        f"bios={bios}",
        "--param",
        "dry_run=true",
        "--json",
    )
    assert code == 0, err
    plan = json.loads(out)["result"]["plan"]
    assert plan["bios"] == [{"attribute": "ProcTurboMode", "from": "Enabled", "to": "Disabled"}]
    code, out, err = await cli(
        ctl, "run", NODE, "decom.firmware_secure", "--param", f"bios={bios}", "--wait", "--json"
    )
    assert code == 0, err
    task = json.loads(out)["task"]
    assert task["state"] == "complete" and task["device_uuid"] == NODE
    assert task["result"]["changed"] == [
        {"bios": "ProcTurboMode", "from": "Enabled", "to": "Disabled"}
    ]
    # A task like any other: `hwfleet tasks` lists it, and its end was an event.
    code, out, err = await cli(ctl, "tasks", "--json")
    assert code == 0, err
    assert any(t["id"] == task["id"] and t["state"] == "complete" for t in json.loads(out))
    async with api(ctl) as client:
        events = (await client.get("/api/v1/events", params={"pattern": "task.finished.#"})).json()
    assert any(e["routing_key"] == f"task.finished.{task['id']}" for e in events)
