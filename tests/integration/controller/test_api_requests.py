"""REST requests at their edges: unknown and offline devices, oversized params, short 422s, /docs.

Issues 11 §5/§6: ``run``/``ping`` of an unknown uuid said "not connected"; params
over 1 MiB were forwarded and the agent dropped its session; 422 replies echoed
the whole input; ``/docs`` loaded Swagger UI from a CDN.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from tests.integration.controller.conftest import (
    add_offline_device,
    controller_settings,
    running_controller,
)

from hwfleet.controller.app import Controller
from hwfleet.protocol.framing import MAX_LINE
from hwfleet.sim.fleet import SimFleet

UNKNOWN = "00000000-0000-4000-8000-00000000beef"
OFFLINE = "00000000-0000-4000-8000-0000000000ff"


@pytest.fixture
async def api(controller: Controller) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {controller.operator_token}"}
    async with httpx.AsyncClient(base_url=controller.api_url, headers=headers, timeout=30) as http:
        yield http


async def test_ping_names_unknown_and_offline_devices_and_pings_each_once(
    controller: Controller, fleet: SimFleet, api: httpx.AsyncClient
) -> None:
    await add_offline_device(controller, OFFLINE)
    online = fleet.devices[0].runtime.info.uuid
    reply = await api.post(
        "/api/v1/devices/ping", json={"uuids": [online, UNKNOWN, online, OFFLINE, UNKNOWN]}
    )
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert list(result) == [online, UNKNOWN, OFFLINE]
    assert result[online]["ok"] is True
    assert result[UNKNOWN] == {"ok": False, "rtt_ms": None, "error": "no such device"}
    assert result[OFFLINE]["ok"] is False and "not connected" in result[OFFLINE]["error"]


async def test_run_on_unknown_device_is_404_and_on_offline_device_409(
    controller: Controller, api: httpx.AsyncClient
) -> None:
    await add_offline_device(controller, OFFLINE)
    unknown = await api.post(f"/api/v1/devices/{UNKNOWN}/run", json={"method": "status"})
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == f"no such device: {UNKNOWN}"
    offline = await api.post(f"/api/v1/devices/{OFFLINE}/run", json={"method": "status"})
    assert offline.status_code == 409 and "not connected" in offline.json()["detail"]


@pytest.mark.parametrize("method", ["status", "decom.qc"])
async def test_params_over_the_line_limit_are_refused_and_the_device_stays(
    controller: Controller, fleet: SimFleet, api: httpx.AsyncClient, method: str
) -> None:
    uuid = fleet.devices[0].runtime.info.uuid
    session = controller.devices.get(uuid)
    assert session is not None
    blob = "x" * (MAX_LINE - 10)  # the body fits the route's cap; the envelope does not fit
    reply = await api.post(
        f"/api/v1/devices/{uuid}/run", json={"method": method, "params": {"blob": blob}}
    )
    assert reply.status_code == 413, reply.text[:300]
    assert "limit" in reply.json()["detail"] and len(reply.content) < 1000
    # Nothing was sent: the same session answers, and no task row was made.
    assert controller.devices.get(uuid) is session
    assert (await controller.devices.ping(uuid))["ok"] is True
    async with controller.store.tx(readonly=True) as tx:
        assert await tx.tasks.list(device_uuid=uuid) == []


async def test_params_just_under_the_limit_still_run(
    controller: Controller, fleet: SimFleet, api: httpx.AsyncClient
) -> None:
    uuid = fleet.devices[0].runtime.info.uuid
    blob = "x" * (MAX_LINE - 1000)
    reply = await api.post(
        f"/api/v1/devices/{uuid}/run", json={"method": "ping", "params": {"nonce": blob}}
    )
    assert reply.status_code == 200, reply.text[:300]
    assert reply.json()["result"]["nonce"] == blob


async def test_validation_errors_name_the_field_without_echoing_the_input(
    controller: Controller, api: httpx.AsyncClient
) -> None:
    secret = "hunter2-do-not-echo"
    wrong = await api.post(
        "/api/v1/devices/ping", json={"uuids": secret, "timeout": 5, "password": secret}
    )
    assert wrong.status_code == 422
    assert secret not in wrong.text
    body = wrong.json()
    assert body["detail"].startswith("body.uuids: ") and "1 more problem" in body["detail"]
    assert {e["field"] for e in body["errors"]} == {"body.uuids", "body.password"}
    too_many = await api.post("/api/v1/devices/ping", json={"uuids": [secret] * 10_001})
    assert too_many.status_code == 422 and secret not in too_many.text
    assert "10000" in too_many.json()["detail"]
    not_json = await api.post(
        f"/api/v1/devices/{UNKNOWN}/run",
        content=secret.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert not_json.status_code == 422 and secret not in not_json.text


async def test_docs_load_every_asset_from_the_controller(
    controller: Controller, api: httpx.AsyncClient
) -> None:
    page = await api.get("/docs")
    assert page.status_code == 200
    assert "//" not in re.sub(r"<!DOCTYPE[^>]*>", "", page.text).replace("// ", "")
    links = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(links) == 3 and all(link.startswith("/docs/assets/") for link in links)
    for link in links:
        asset = await api.get(link)
        assert asset.status_code == 200 and len(asset.content) > 500, link
    script = await api.get("/docs/assets/swagger-ui-bundle.js")
    assert "SwaggerUIBundle" in script.text
    assert (await api.get("/openapi.json")).json()["info"]["title"] == "hwfleet controller"
    assert (await api.get("/redoc")).status_code == 404  # ReDoc would need a CDN


async def test_the_api_max_body_setting_caps_every_route(tmp_path: Path) -> None:
    settings = controller_settings(tmp_path / "small", api_max_body=100)
    async with running_controller(settings) as ctl:
        headers = {"Authorization": f"Bearer {ctl.operator_token}"}
        async with httpx.AsyncClient(base_url=ctl.api_url, headers=headers) as http:
            small = await http.post("/api/v1/devices/ping", json={"all": True, "timeout": 1})
            assert small.status_code == 200
            big = await http.post("/api/v1/devices/ping", json={"uuids": ["u" * 40] * 3})
            assert big.status_code == 413
            assert "100-byte limit of POST /api/v1/devices/ping" in big.json()["detail"]
