"""The Images and Graphs pages over real HTTP against a real controller: an upload streamed
to the registry, deletion behind a confirmation, graph runs and their controls, all
needing the session and its CSRF token."""

from __future__ import annotations

import gzip
import hashlib

import httpx
from tests.integration.web.conftest import log_in

from hwfleet.controller.app import Controller
from hwfleet.sim.fleet import SimFleet

RAW = bytes(range(256)) * 64  # 16 KiB, no magic: a raw image


async def test_upload_lists_and_deletes_an_image(
    controller: Controller, browser_client: httpx.AsyncClient
) -> None:
    csrf = await log_in(browser_client, controller.operator_token)
    body = gzip.compress(RAW, mtime=0)
    htmx = {"HX-Request": "true", "Content-Type": "application/octet-stream"}
    refused = await browser_client.post(
        "/images/upload", params={"name": "no-token"}, content=RAW, headers=htmx
    )
    assert refused.status_code == 403
    assert await controller.images.list() == []  # nothing was stored without the token
    reply = await browser_client.post(
        "/images/upload",
        params={"name": "disk one"},
        content=body,
        headers={**htmx, "X-CSRF-Token": csrf},
    )
    assert reply.status_code == 200 and "image disk one stored" in reply.text, reply.text
    [record] = await controller.images.list()
    assert record.sha256 == hashlib.sha256(body).hexdigest()
    assert record.format == "raw.gz" and record.disk_size == len(RAW)
    page = (await browser_client.get("/images")).text
    assert "disk one" in page and record.sha256[:16] in page
    bad = await browser_client.post(
        "/images/upload", content=RAW, headers={**htmx, "X-CSRF-Token": csrf}
    )
    assert "upload refused" in bad.text and "name" in bad.text  # no name: a clear message
    form = await browser_client.post(  # a form posted without JavaScript: told why, not stored
        "/images/upload",
        files={"file": ("x.img", RAW)},
        headers={"HX-Request": "true", "X-CSRF-Token": csrf},
    )
    assert "needs JavaScript" in form.text and len(await controller.images.list()) == 1
    confirm = await browser_client.get(f"/images/{record.id}/delete")
    assert confirm.status_code == 200 and "Delete image disk one?" in confirm.text
    assert (await browser_client.post(f"/images/{record.id}/delete")).status_code == 403
    gone = await browser_client.post(f"/images/{record.id}/delete", data={"csrf": csrf})
    assert gone.status_code == 303 and gone.headers["location"] == "/images"
    assert await controller.images.list() == []
    again = await browser_client.post(
        f"/images/{record.id}/delete", headers={"HX-Request": "true", "X-CSRF-Token": csrf}
    )
    assert again.status_code == 200 and "no image" in again.text


async def test_run_a_graph_from_the_device_page_and_cancel_it(
    controller: Controller, fleet: SimFleet, browser_client: httpx.AsyncClient
) -> None:
    csrf = await log_in(browser_client, controller.operator_token)
    uuid = fleet.devices[0].runtime.info.uuid
    headers = {"HX-Request": "true", "X-CSRF-Token": csrf}
    device = (await browser_client.get(f"/devices/{uuid}")).text
    assert "Graph.Hwfleet.BurnIn" in device and "no graph running" in device
    bad = await browser_client.post(
        f"/devices/{uuid}/graph",
        data={"graph": "Graph.Hwfleet.BurnIn", "options": "[1"},
        headers=headers,
    )
    assert "options: not JSON" in bad.text
    unknown = await browser_client.post(
        f"/devices/{uuid}/graph", data={"graph": "Graph.Nope"}, headers=headers
    )
    assert "unknown graph" in unknown.text
    no_token = await browser_client.post(
        f"/devices/{uuid}/graph",
        data={"graph": "Graph.Hwfleet.BurnIn"},
        headers={"HX-Request": "true"},
    )
    assert no_token.status_code == 403
    started = await browser_client.post(
        f"/devices/{uuid}/graph",
        data={"graph": "Graph.Hwfleet.BurnIn", "options": '{"soak": {"seconds": 600}}'},
        headers=headers,
    )
    assert "started graph" in started.text, started.text
    graph_id = started.text.split("started graph ", 1)[1].split("<", 1)[0].strip()
    assert "Running" in (await browser_client.get(f"/devices/{uuid}")).text
    graphs = (await browser_client.get("/graphs")).text
    assert graph_id in graphs and "Graph.Hwfleet.Discovery" in graphs  # the library too
    busy = await browser_client.post(
        f"/devices/{uuid}/graph", data={"graph": "Graph.Hwfleet.Discovery"}, headers=headers
    )
    assert "already" in busy.text or "busy" in busy.text, busy.text
    paused = await browser_client.post(f"/graphs/{graph_id}/pause", headers=headers)
    assert "paused" in paused.text
    resumed = await browser_client.post(f"/graphs/{graph_id}/resume", headers=headers)
    assert "running" in resumed.text
    assert (await browser_client.post(f"/graphs/{graph_id}/cancel")).status_code == 403
    cancelled = await browser_client.post(f"/graphs/{graph_id}/cancel", headers=headers)
    assert "cancelled" in cancelled.text
    graph = await controller.graphs.engine.get(graph_id)
    assert graph is not None and graph["status"] == "cancelled"
    again = await browser_client.post(f"/graphs/{graph_id}/pause", headers=headers)
    assert "not running" in again.text
    assert (
        await browser_client.post(f"/graphs/{graph_id}/explode", headers=headers)
    ).status_code == 404
