"""The Images and Graphs pages over real HTTP against a real controller: an upload streamed
to the registry, deletion behind a confirmation, graph runs and their controls, all
needing the session and its CSRF token."""

from __future__ import annotations

import gzip
import hashlib
import os

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
    assert record.blake3 is not None and f"blake3 {record.blake3}" in page
    bad = await browser_client.post(
        "/images/upload", content=RAW, headers={**htmx, "X-CSRF-Token": csrf}
    )
    assert "upload refused" in bad.text and "name" in bad.text  # no name: a clear message
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


async def test_the_form_uploads_without_javascript(
    controller: Controller, browser_client: httpx.AsyncClient
) -> None:
    """multipart/form-data as a browser posts the form: CSRF field, name, then the file."""
    csrf = await log_in(browser_client, controller.operator_token)
    big = os.urandom(3 * 1024 * 1024)  # several network reads: parsed as it streams
    refused = await browser_client.post(
        "/images/upload", data={"name": "no token"}, files={"file": ("a.img", big)}
    )
    assert refused.status_code == 403 and await controller.images.list() == []
    wrong = await browser_client.post(
        "/images/upload", data={"csrf": "forged", "name": "x"}, files={"file": ("a.img", big)}
    )
    assert wrong.status_code == 403 and await controller.images.list() == []
    reply = await browser_client.post(
        "/images/upload", data={"csrf": csrf, "name": "form disk"}, files={"file": ("a.img", big)}
    )
    assert reply.status_code == 303, reply.text
    assert reply.headers["location"].startswith("/images?added=")
    landed = await browser_client.get(reply.headers["location"])
    assert "image form disk stored (3.0 MiB" in landed.text
    [record] = await controller.images.list()
    assert record.name == "form disk" and record.sha256 == hashlib.sha256(big).hexdigest()
    unnamed = await browser_client.post(  # no name: the file's own
        "/images/upload", data={"csrf": csrf}, files={"file": ("rack-a.img", RAW)}
    )
    assert unnamed.status_code == 303
    assert {r.name for r in await controller.images.list()} == {"form disk", "rack-a.img"}
    empty = await browser_client.post(
        "/images/upload", data={"csrf": csrf, "name": "e"}, files={"file": ("e.img", b"")}
    )
    assert empty.status_code == 400 and "upload refused: the upload is empty" in empty.text
    no_file = await browser_client.post(  # multipart with fields only (None: no file name)
        "/images/upload", files={"csrf": (None, csrf), "name": (None, "n")}
    )
    assert no_file.status_code == 400 and "choose a file to upload" in no_file.text
    assert len(await controller.images.list()) == 2


async def test_an_image_added_elsewhere_reaches_an_open_page_live(
    controller: Controller, browser_client: httpx.AsyncClient
) -> None:
    """Another operator (here the REST API the CLI uses) adds an image: the live stream of
    a page already open names it (``image``), and the page's region reloads on that."""
    await log_in(browser_client, controller.operator_token)
    page = await browser_client.get("/images")
    assert 'hx-trigger="sse:image' in page.text
    api = {"Authorization": f"Bearer {controller.operator_token}"}
    async with browser_client.stream("GET", "/live", params={"after": 0}) as stream:
        lines = stream.aiter_lines()
        assert await anext(lines) == "event: hello"
        added = await browser_client.post(
            "/api/v1/images", params={"name": "from the cli"}, content=RAW, headers=api
        )
        assert added.status_code in (200, 201), added.text
        async for line in lines:
            if line == "event: image":
                break
    [record] = await controller.images.list()
    async with controller.store.tx() as tx:
        events = {e.routing_key: e.payload for e in await tx.events.list()}
    body = events[f"image.added.{record.id}"]
    assert (body["sha256"], body["blake3"]) == (record.sha256, record.blake3), body
