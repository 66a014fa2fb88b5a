"""The dashboard's pages: Fleet, Device, Scans, a scan, Tasks and Keys (GET only; Images
and Graphs have their own modules).

Each page is complete HTML (readable without JavaScript). Its ``#live`` region reloads
itself through htmx when the page's SSE connection (:mod:`hwfleet.web.live`) names an
event it shows, so the page stays correct however long it is left open. Reads go through
the API's services only.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from hwfleet.api.deps import DevicesDep, EventsDep, KeysDep, ScansDep, TasksDep
from hwfleet.api.graphs import Graphs
from hwfleet.api.services.events import EventsService
from hwfleet.web.auth import Session, SessionDep
from hwfleet.web.graphviews import device_graphs, library_of
from hwfleet.web.templating import render
from hwfleet.web.views import (
    DeliveryView,
    DeviceView,
    EventView,
    KeyView,
    ScanResultView,
    ScanView,
    TaskView,
    fleet_page,
    from_body,
    progress_points,
)

router = APIRouter(include_in_schema=False)


async def cursor(events: EventsService) -> int:
    """The newest event id now: the page's SSE connection resumes from it."""
    newest = await events.list_events(
        after=0, before=None, newest_first=True, limit=1, device=None, pattern="#"
    )
    return int(newest[0]["id"]) if newest else 0


async def show(
    request: Request, name: str, session: Session, events: EventsService, **context: object
) -> HTMLResponse:
    """A page, with the session's CSRF token and the event cursor its live stream starts at."""
    if "after" not in context:
        context["after"] = await cursor(events)
    return render(request, name, csrf=session.csrf, **context)


@router.get("/", response_class=HTMLResponse)
async def fleet(
    request: Request,
    session: SessionDep,
    devices: DevicesDep,
    events: EventsDep,
    q: str = Query("", max_length=200),
    state: str = Query("", max_length=32),
    page: int = Query(1, ge=1, le=100_000),
) -> HTMLResponse:
    view = fleet_page(await devices.list_devices(discovered=False), q.strip(), state, page)
    return await show(request, "fleet.html", session, events, fleet=view)


@router.get("/devices/{uuid}", response_class=HTMLResponse)
async def device(
    request: Request,
    uuid: str,
    session: SessionDep,
    devices: DevicesDep,
    tasks: TasksDep,
    events: EventsDep,
    keys: KeysDep,
    graphs: Graphs,
) -> HTMLResponse:
    body = await devices.get(uuid)
    active_graph, recent_graphs = await device_graphs(graphs, uuid)
    inventory = body.get("inventory") or {}
    task_rows = await tasks.list_tasks(device=uuid, active=False, limit=50)
    event_rows = await events.list_events(
        after=0, before=None, newest_first=True, limit=50, device=uuid, pattern="#"
    )
    key_rows = [k for k in await keys.list_keys() if k.get("device_uuid") == uuid]
    return await show(
        request,
        "device.html",
        session,
        events,
        device=DeviceView.of(body),
        macs=[str(m) for m in body.get("macs") or []],
        inventory=sorted((str(k), str(v)) for k, v in dict(inventory).items()),
        tasks=[from_body(TaskView, t) for t in task_rows],
        history=[EventView.of(e) for e in event_rows],
        keys=[from_body(KeyView, k) for k in key_rows],
        active_graph=active_graph,
        graphs=recent_graphs,
        library=await library_of(graphs),
    )


@router.get("/scans", response_class=HTMLResponse)
async def scans_page(
    request: Request, session: SessionDep, scans: ScansDep, events: EventsDep
) -> HTMLResponse:
    rows = [from_body(ScanView, s) for s in await scans.list_scans(20)]
    outbox = [from_body(DeliveryView, o) for o in await scans.outbox(None, 20)]
    return await show(request, "scans.html", session, events, scans=rows, outbox=outbox)


@router.get("/scans/{operationid}", response_class=HTMLResponse)
async def scan_page(
    request: Request, operationid: int, session: SessionDep, scans: ScansDep, events: EventsDep
) -> HTMLResponse:
    body = await scans.get(operationid, results=True)
    scan = from_body(ScanView, body)
    results = [from_body(ScanResultView, r) for r in body.get("results") or []]
    return await show(
        request,
        "scan.html",
        session,
        events,
        scan=scan,
        results=results,
        mes=[from_body(DeliveryView, d) for d in body.get("mes") or []],
        chart=progress_points(scan.started_at, results, scan.expected),
    )


@router.get("/tasks", response_class=HTMLResponse)
async def tasks_page(
    request: Request,
    session: SessionDep,
    tasks: TasksDep,
    events: EventsDep,
    active: bool = False,
) -> HTMLResponse:
    rows = [
        from_body(TaskView, t)
        for t in await tasks.list_tasks(device=None, active=active, limit=200)
    ]
    return await show(request, "tasks.html", session, events, tasks=rows, active=active)


@router.get("/keys", response_class=HTMLResponse)
async def keys_page(
    request: Request, session: SessionDep, keys: KeysDep, events: EventsDep
) -> HTMLResponse:
    rows = [from_body(KeyView, k) for k in await keys.list_keys()]
    rows.sort(key=lambda k: (k.state != "pending", k.created_at))
    return await show(request, "keys.html", session, events, keys=rows)
