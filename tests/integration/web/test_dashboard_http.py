"""The dashboard over real HTTP against a real controller: login, sessions, CSRF, pages."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from tests.integration.controller.conftest import controller_settings, running_controller
from tests.integration.web.conftest import log_in

from hwfleet.controller.app import Controller
from hwfleet.sim.fleet import SimFleet
from hwfleet.web.auth import COOKIE


async def test_pages_need_a_login(browser_client: httpx.AsyncClient) -> None:
    for path in ("/", "/scans", "/tasks", "/keys"):
        reply = await browser_client.get(path)
        assert reply.status_code == 303 and reply.headers["location"] == "/login", path
    assert (await browser_client.get("/live")).status_code == 303
    htmx = await browser_client.get("/", headers={"HX-Request": "true"})
    assert htmx.status_code == 401 and htmx.headers["hx-redirect"] == "/login"


async def test_wrong_token_is_refused(browser_client: httpx.AsyncClient) -> None:
    reply = await browser_client.post("/login", data={"token": "not-it"})
    assert reply.status_code == 401
    assert "wrong operator token" in reply.text
    assert COOKIE not in reply.headers.get("set-cookie", "")


async def test_login_sets_a_strict_httponly_cookie(
    controller: Controller, browser_client: httpx.AsyncClient
) -> None:
    reply = await browser_client.post("/login", data={"token": controller.operator_token})
    cookie = reply.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert controller.operator_token.lower() not in cookie
    assert controller.operator_token not in reply.headers.get("location", "")


async def test_fleet_page_lists_devices_with_status_words(
    controller: Controller, fleet: SimFleet, browser_client: httpx.AsyncClient
) -> None:
    await log_in(browser_client, controller.operator_token)
    page = (await browser_client.get("/")).text
    for device in fleet.devices:
        assert device.runtime.info.uuid in page
    assert "idle" in page  # st_id 0 as words
    search = await browser_client.get("/", params={"q": fleet.devices[0].runtime.info.name})
    assert fleet.devices[0].runtime.info.uuid in search.text
    assert fleet.devices[1].runtime.info.uuid not in search.text


async def test_an_action_without_the_csrf_token_fails(
    controller: Controller, fleet: SimFleet, browser_client: httpx.AsyncClient
) -> None:
    csrf = await log_in(browser_client, controller.operator_token)
    uuid = fleet.devices[0].runtime.info.uuid
    refused = await browser_client.post(f"/devices/{uuid}/ping", headers={"HX-Request": "true"})
    assert refused.status_code == 403
    wrong = await browser_client.post(
        f"/devices/{uuid}/ping", headers={"HX-Request": "true", "X-CSRF-Token": csrf + "x"}
    )
    assert wrong.status_code == 403
    cross = await browser_client.post(
        f"/devices/{uuid}/ping",
        headers={"HX-Request": "true", "X-CSRF-Token": csrf, "Origin": "http://evil.example"},
    )
    assert cross.status_code == 403
    ok = await browser_client.post(
        f"/devices/{uuid}/ping", headers={"HX-Request": "true", "X-CSRF-Token": csrf}
    )
    assert ok.status_code == 200 and "pong in" in ok.text, ok.text
    form = await browser_client.post(f"/devices/{uuid}/ping", data={"csrf": csrf})
    assert form.status_code == 303


async def test_a_logged_out_session_cannot_act(
    controller: Controller, fleet: SimFleet, browser_client: httpx.AsyncClient
) -> None:
    csrf = await log_in(browser_client, controller.operator_token)
    sid = browser_client.cookies[COOKIE]
    assert (await browser_client.post("/logout", data={"csrf": csrf})).status_code == 303
    browser_client.cookies.set(COOKIE, sid)  # an attacker replays the old cookie
    uuid = fleet.devices[0].runtime.info.uuid
    reply = await browser_client.post(
        f"/devices/{uuid}/ping", headers={"HX-Request": "true", "X-CSRF-Token": csrf}
    )
    assert reply.status_code == 401
    assert (await browser_client.get("/")).status_code == 303


async def test_the_api_does_not_take_the_session_cookie(
    controller: Controller, fleet: SimFleet, browser_client: httpx.AsyncClient
) -> None:
    csrf = await log_in(browser_client, controller.operator_token)
    uuid = fleet.devices[0].runtime.info.uuid
    reply = await browser_client.post(
        "/api/v1/devices/ping", json={"uuids": [uuid]}, headers={"X-CSRF-Token": csrf}
    )
    assert reply.status_code == 401
    bearer = await browser_client.get(
        "/api/v1/devices", headers={"Authorization": f"Bearer {controller.operator_token}"}
    )
    assert bearer.status_code == 200 and len(bearer.json()) == len(fleet.devices)


async def test_device_scans_tasks_keys_pages_render(
    controller: Controller, fleet: SimFleet, browser_client: httpx.AsyncClient
) -> None:
    await log_in(browser_client, controller.operator_token)
    uuid = fleet.devices[0].runtime.info.uuid
    device = await browser_client.get(f"/devices/{uuid}")
    assert device.status_code == 200 and uuid in device.text and "Inventory" in device.text
    assert "script-src 'self'" in device.headers["content-security-policy"]
    assert device.headers["x-frame-options"] == "DENY"
    assert device.headers["cache-control"] == "no-store"
    for path in ("/scans", "/tasks", "/keys", "/tasks?active=true"):
        assert (await browser_client.get(path)).status_code == 200, path
    assert (await browser_client.get("/devices/no-such")).status_code == 404
    assert (await browser_client.get("/static/htmx.min.js")).status_code == 200
    assert (await browser_client.get("/static/..%2Fauth.py")).status_code == 404


async def test_the_dashboard_can_be_turned_off(tmp_path: Path) -> None:
    settings = controller_settings(tmp_path / "off", dashboard=False)
    async with running_controller(settings) as ctl, httpx.AsyncClient(base_url=ctl.api_url) as c:
        assert (await c.get("/")).status_code == 404
        assert (await c.post("/login", data={"token": ctl.operator_token})).status_code == 404
        assert (await c.get("/healthz")).status_code == 200


async def test_the_live_stream_ends_at_logout_and_resumes_from_last_event_id(
    controller: Controller, fleet: SimFleet, browser_client: httpx.AsyncClient, deadline: float
) -> None:
    csrf = await log_in(browser_client, controller.operator_token)
    # Resuming from id 0 replays the devices' joins (coalesced: one event per name).
    seen: list[str] = []
    async with asyncio.timeout(deadline):
        async with browser_client.stream("GET", "/live", headers={"Last-Event-ID": "0"}) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            async for line in stream.aiter_lines():
                seen.append(line)
                if line == "event: device":
                    await browser_client.post("/logout", data={"csrf": csrf})
            # The stream ended by itself: the logout closed it.
    assert "event: hello" in seen and "event: device" in seen
    ids = [int(line.split(": ")[1]) for line in seen if line.startswith("id: ")]
    assert ids == sorted(ids) and ids
    assert (await browser_client.get("/live")).status_code == 303
