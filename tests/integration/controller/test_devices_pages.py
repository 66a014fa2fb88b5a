"""``GET /api/v1/devices`` in pages and filtered, for fleets of thousands (issue 18)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from tests.integration.controller.conftest import add_offline_device

from hwfleet.controller.app import Controller
from hwfleet.sim.fleet import SimFleet


@pytest.fixture
async def api(controller: Controller) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {controller.operator_token}"}
    async with httpx.AsyncClient(base_url=controller.api_url, headers=headers, timeout=30) as http:
        yield http


async def test_pages_by_uuid_cover_every_device_once(
    controller: Controller, api: httpx.AsyncClient
) -> None:
    uuids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(7)]
    for i, uuid in enumerate(reversed(uuids)):
        await add_offline_device(controller, uuid, serial=100 + i)
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 3, "discovered": "false"}
    for _ in range(5):  # 7 devices, 3 a page: three pages
        reply = await api.get("/api/v1/devices", params=params)
        assert reply.status_code == 200
        seen += [d["uuid"] for d in reply.json()]
        cursor = reply.headers.get("X-Next-After")
        if cursor is None:
            break
        params["after"] = cursor
    assert seen == uuids
    whole = await api.get("/api/v1/devices")
    assert sorted(d["uuid"] for d in whole.json()) == uuids  # no limit: the old shape
    assert "X-Next-After" not in whole.headers


async def test_filters_by_state_and_model(
    controller: Controller, api: httpx.AsyncClient, fleet: SimFleet
) -> None:
    await add_offline_device(controller, "00000000-0000-4000-8000-0000000000ff")
    online = (await api.get("/api/v1/devices", params={"state": "online"})).json()
    assert {d["uuid"] for d in online} == {d.runtime.info.uuid for d in fleet.devices}
    offline = (await api.get("/api/v1/devices", params={"state": "offline"})).json()
    assert [d["uuid"] for d in offline] == ["00000000-0000-4000-8000-0000000000ff"]
    model_x = (await api.get("/api/v1/devices", params={"model_id": "X"})).json()
    assert [d["uuid"] for d in model_x] == ["00000000-0000-4000-8000-0000000000ff"]
    bad = await api.get("/api/v1/devices", params={"limit": 0})
    assert bad.status_code == 422
