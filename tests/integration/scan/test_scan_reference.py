"""Devices running seed 000's reference client are scanned beside hwfleet agents (issue 11 §2).

Everything is real: RabbitMQ, the controller (its API, scan service and policy), hwfleet
agents on the AMQP carrier (``BusLink`` over one shared-credentials bus), mes-sim, and
reference devices (``tests/reference_client.py``) declaring exactly what the reference
declares. Before hwfleet declared ``devicescan`` and ``hwinfo_queue`` as the reference
does, the reference's declarations failed with ``PRECONDITION_FAILED``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from tests.conftest import service_missing, wait_for
from tests.reference_client import ReferenceDevice

from hwfleet.agent.links.bus import BusLink
from hwfleet.bus import Delivery
from hwfleet.bus.amqp import AmqpBus
from hwfleet.controller.app import Controller
from hwfleet.controller.scan import legacy_uuid
from hwfleet.integrations.rabbitmq_policy import POLICY_NAME
from hwfleet.integrations.rabbitmq_users import vhost_of
from hwfleet.settings import ServerSettings
from hwfleet.sim.fleet import runtime_for
from hwfleet.sim.mes import MesSimulator, serve
from hwfleet.sim.profiles import generate

pytestmark = pytest.mark.rabbit

SEED = 1107
#: Reference devices: (sn, [(iface, mac)]) — the MES registers the first two; the third is not.
REFERENCE = [
    ("REF-PASS", [("enp4s0", "e0:18:7d:2e:ca:68"), ("enp5s0", "e0:18:7d:2e:ca:69")]),
    (90042, [("eth0", "e0:18:7d:2e:cb:44")]),
    ("REF-UNKNOWN", [("eth0", "e0:18:7d:2e:cb:55")]),
]


def _profile() -> dict[str, Any]:
    agents = msgspec.to_builtins(generate(2, SEED))
    devices = agents["devices"] + [
        {"sn": sn, "interfaces": [{"name": i, "mac": m} for i, m in macs]} for sn, macs in REFERENCE
    ]
    records = {
        "90042": [
            {"serialNo": 90042, "macInfo": [{"interface": "eth0", "macaddr": "0A:0B:0C:0D:0E:0F"}]}
        ]
    }
    return {
        **agents,
        "devices": devices,
        "mes": {"records": records, "unregistered": ["REF-UNKNOWN"]},
    }


@dataclass
class Rig:
    ctl: Controller
    mes: str
    url: str
    references: list[ReferenceDevice]
    agent_bus: AmqpBus
    links: list[BusLink]
    tasks: list[asyncio.Task[None]]

    async def start_agents(self, deadline: float) -> None:
        for index, device in enumerate(generate(2, SEED).devices):
            link = BusLink(runtime_for(device, index, SEED), self.agent_bus, heartbeat=1.0)
            self.links.append(link)
            self.tasks.append(asyncio.create_task(link.run()))
        async with asyncio.timeout(deadline):
            await asyncio.gather(*(link.connected.wait() for link in self.links))

    async def scan(self, deadline: float) -> dict[str, Any]:
        """``POST /api/v1/scans`` and wait for its finish; returns the stored scan."""
        async with httpx.AsyncClient(base_url=self.ctl.api_url, headers=self._auth()) as http:
            started = (await http.post("/api/v1/scans", json={})).json()
            async with asyncio.timeout(deadline):
                while True:
                    scan: dict[str, Any] = (
                        await http.get(f"/api/v1/scans/{started['operationid']}")
                    ).json()
                    if scan["state"] != "running":
                        return scan
                    await asyncio.sleep(0.05)

    async def posted(self, operationid: int, deadline: float) -> dict[str, Any]:
        """What the MES received for a scan, by kind, once its posts are delivered."""
        bodies: dict[str, Any] = {}

        async def delivered() -> bool:
            async with httpx.AsyncClient() as http:
                got = (await http.get(f"{self.mes}/_received")).json()
            bodies.clear()
            for post in got["posts"]:
                body = post["body"]
                if body.get("operationid") == operationid or body.get("id") == str(operationid):
                    bodies[post["path"].rsplit("/", 1)[-1]] = body
            return len(bodies) == 3

        await wait_for(delivered, timeout=deadline)
        return bodies

    async def devices(self) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=self.ctl.api_url, headers=self._auth()) as http:
            rows: list[dict[str, Any]] = (await http.get("/api/v1/devices")).json()
            return rows

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.ctl.operator_token}"}


def _settings(tmp_path: Path, bus: str, mes: str, **extra: Any) -> ServerSettings:
    return ServerSettings(
        data_dir=str(tmp_path / "ctl"),
        agent_listen="127.0.0.1:0",
        api_listen="127.0.0.1:0",
        bus=bus,
        mes=mes,
        call_timeout=5.0,
        **extra,
    )


@pytest.fixture
async def rig(amqp_url: str, tmp_path: Path, deadline: float) -> AsyncIterator[Rig]:
    sim = MesSimulator.from_profile(_profile())
    async with serve(sim) as mes:
        agent_bus = AmqpBus(amqp_url, connect_timeout=10)
        ctl = Controller(_settings(tmp_path, amqp_url, mes, scan_quiet_timeout=2.0))
        rig = Rig(ctl, mes, amqp_url, [], agent_bus, [], [])
        try:
            await ctl.start()
            await agent_bus.start()
            for sn, macs in REFERENCE:
                device = ReferenceDevice(amqp_url, sn, macs)
                await device.start()
                rig.references.append(device)
            yield rig
        finally:
            for link in rig.links:
                link.stop()
            await asyncio.gather(*rig.tasks, return_exceptions=True)
            for device in rig.references:
                await device.close()
            await agent_bus.close()
            await ctl.close()


def _entries(scan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    document = scan["document"]
    assert list(document) == ["operationid", "pairInfo", "scaninfo"]
    by_sn = {json.dumps(e["sn"]): e for e in document["scaninfo"]}
    assert len(by_sn) == len(document["scaninfo"]), "one entry per unit"
    return by_sn


def _check_reference_entries(entries: dict[str, dict[str, Any]]) -> None:
    passing = entries[json.dumps("REF-PASS")]
    assert passing == {
        "macinfo": [
            {"interface": "enp4s0", "macaddr": "e0:18:7d:2e:ca:68", "scanstatus": "1"},
            {"interface": "enp5s0", "macaddr": "e0:18:7d:2e:ca:69", "scanstatus": "1"},
        ],
        "sn": "REF-PASS",
        "result": "1",
    }
    mismatch = entries["90042"]  # an integer serial stays an integer
    assert mismatch["sn"] == 90042 and mismatch["result"] == "0"
    assert [m["scanstatus"] for m in mismatch["macinfo"]] == ["0", "0"]
    unknown = entries[json.dumps("REF-UNKNOWN")]
    assert unknown["result"] == "0" and "not registered" in unknown["error"]


def _policies(vhost: str) -> dict[str, Any]:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        service_missing("rabbitmqctl is not on this machine")
    out = subprocess.run(
        [ctl, "-q", "list_queues", "-p", vhost, "name", "type", "durable", "arguments", "policy",
         "--formatter", "json"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    return {row["name"]: row for row in json.loads(out)}


async def test_reference_devices_alone_then_with_hwfleet_agents(rig: Rig, deadline: float) -> None:
    # Alone: nobody enrolled, so nobody is expected; the scan ends on its quiet timeout.
    first = await rig.scan(deadline)
    assert first["state"] == "complete", first
    entries = _entries(first)
    assert set(entries) == {json.dumps(sn) for sn, _ in REFERENCE}
    _check_reference_entries(entries)
    for device in rig.references:
        assert device.errors == [], device.errors  # every declaration was accepted
        assert device.triggered[:1] == [first["operationid"]]

    posted = await rig.posted(first["operationid"], deadline)
    assert posted["deviceScan"] == first["document"]
    assert posted["pair"] == {"operationid": first["operationid"], "snArray": ["REF-PASS"]}
    assert posted["devicescan"] == {
        "id": str(first["operationid"]),
        "status": "1 devices passed scanning",
    }

    # They are devices of kind legacy now, known by their serial.
    legacy = {d["uuid"]: d for d in await rig.devices() if d["kind"] == "legacy"}
    assert {legacy_uuid(sn) for sn, _ in REFERENCE} == set(legacy)
    assert {json.dumps(d["serial"]) for d in legacy.values()} == set(entries)

    # With hwfleet agents: everyone is expected, everyone answers, the scan completes early.
    await rig.start_agents(deadline)
    second = await rig.scan(deadline)
    assert second["state"] == "complete" and second["answered"] == second["expected"] == 5
    entries = _entries(second)
    agents = {json.dumps(link.runtime.info.serial) for link in rig.links}
    assert set(entries) == agents | {json.dumps(sn) for sn, _ in REFERENCE}
    _check_reference_entries(entries)
    for key in agents:
        assert entries[key]["result"] == "1", entries[key]
    posted = await rig.posted(second["operationid"], deadline)
    assert posted["deviceScan"] == second["document"]
    assert sorted(map(json.dumps, posted["pair"]["snArray"])) == sorted(
        agents | {json.dumps("REF-PASS")}
    )

    # hwfleet's declarations are the reference's; the rest is the policy.
    def policy_applied() -> bool:
        return _policies(vhost_of(rig.url)).get("hwinfo_queue", {}).get("policy") == POLICY_NAME

    await wait_for(policy_applied, timeout=deadline)
    queue = _policies(vhost_of(rig.url))["hwinfo_queue"]
    assert (queue["type"], queue["durable"], queue["arguments"]) == ("classic", True, [])


async def test_scan_legacy_off_refuses_unenrolled_replies(
    amqp_url: str, tmp_path: Path, deadline: float, caplog: pytest.LogCaptureFixture
) -> None:
    sim = MesSimulator.from_profile(_profile())
    async with serve(sim) as mes:
        settings = _settings(tmp_path, amqp_url, mes, scan_quiet_timeout=1.5, scan_legacy=False)
        ctl = Controller(settings)
        device = ReferenceDevice(amqp_url, *REFERENCE[0])
        refused: list[dict[str, Any]] = []
        try:
            await ctl.start()
            await device.start()

            async def on_refused(delivery: Delivery) -> None:
                refused.append(msgspec.json.decode(delivery.body)["data"])

            await ctl.bus.subscribe("events", "scan.refused.#", on_refused)
            scan = await ctl.scans.start()
            await wait_for(lambda: bool(refused), timeout=deadline)
            finished = await ctl.scans.watcher.state(scan.operationid)
            assert finished is not None
            await wait_for(lambda: not finished.running, timeout=deadline)
            async with ctl.store.tx() as tx:
                record = await tx.scans.get(scan.operationid)
                kinds = [d.kind for d in await tx.devices.list()]
        finally:
            await device.close()
            await ctl.close()
    assert record is not None and record.document is not None
    assert record.document["scaninfo"] == []  # not in the document, not a device
    assert "legacy" not in kinds
    assert ctl.scans.refused >= 1
    assert refused[0]["sn"] == "REF-PASS" and "--scan-legacy off" in refused[0]["reason"]
    assert "reply refused" in caplog.text
