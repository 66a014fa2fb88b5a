"""The dashboard's Graphs page and graph actions: run, cancel, pause, resume (DESIGN §11).

The page shows active and recent task graphs with each task's state, and the graph
library. Its ``#live`` region reloads on ``graph`` (``graph.started``/``graph.finished``)
and ``task`` (``task.finished``) events, so tasks are seen reaching the end without a
reload. The Device page runs a library graph on its device (options as JSON) and shows
its active graph. Everything goes through the
:class:`~hwfleet.workflows.service.GraphService` the REST API uses; each graph object
(the seed-003 shape) becomes a typed :class:`GraphView` here.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, Response

from hwfleet.api.deps import EventsDep
from hwfleet.api.graphs import Graphs
from hwfleet.web.actions import attempt, checked_form, json_object, outcome
from hwfleet.web.auth import SessionDep
from hwfleet.web.graphviews import GraphView, library_of
from hwfleet.web.pages import show

router = APIRouter(include_in_schema=False)
RECENT = 50
ACTIVE = 500
GRAPH_ACTIONS = ("cancel", "pause", "resume")


@router.get("/graphs", response_class=HTMLResponse)
async def graphs_page(
    request: Request, session: SessionDep, graphs: Graphs, events: EventsDep
) -> HTMLResponse:
    # Active ones asked for apart: a long-running graph stays listed behind many newer ones.
    active = [GraphView.of(g) for g in await graphs.engine.list(active_only=True, limit=ACTIVE)]
    rows = await graphs.engine.list(active_only=False, limit=RECENT)
    recent = [v for v in (GraphView.of(g) for g in rows) if not v.active]
    library = await library_of(graphs)
    return await show(
        request, "graphs.html", session, events, active=active, recent=recent, library=library
    )


@router.post("/graphs/{graph_id}/{action}")
async def control(
    request: Request, graph_id: str, action: str, session: SessionDep, graphs: Graphs
) -> Response:
    await checked_form(request, session)
    operations = {
        "cancel": graphs.engine.cancel,
        "pause": graphs.engine.pause,
        "resume": graphs.engine.resume,
    }
    operation = operations.get(action)
    if operation is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "cancel, pause or resume")

    async def act() -> str:
        reply = await operation(graph_id)
        return f"graph {graph_id[:8]}: {reply.get('status', action)}"

    return outcome(request, "/graphs", *await attempt(act))


@router.post("/devices/{uuid}/graph")
async def run_graph(request: Request, uuid: str, session: SessionDep, graphs: Graphs) -> Response:
    form = await checked_form(request, session)

    async def act() -> str:
        name = form.get("graph", "").strip()
        if not name:
            raise ValueError("graph: choose a graph from the library")
        options = json_object(form, "options", '{"soak": {"seconds": 5}}')
        graph_id = await graphs.engine.run(name, uuid, options)
        return f"{name}: started graph {graph_id}"

    return outcome(request, f"/devices/{uuid}", *await attempt(act))
