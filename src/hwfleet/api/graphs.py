"""Task graphs, their library and SKUs over REST (the same operations as the seed-003 RPCs).

Also RackHD's bootstrap pair over HTTPS for machines that cannot reach the broker:
``GET``/``POST /api/v1/nodes/{id}/commands`` (requestCommands / respondCommands). These
two take the operator token or the node's own credential (:mod:`hwfleet.workflows.nodecreds`:
valid only for that node, only here, only while its graph is active); every other route
needs the operator token.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, status

from hwfleet.api.auth import UNAUTHORIZED, require_token, token_matches
from hwfleet.api.deps import lookup
from hwfleet.workflows.definitions import DefinitionError
from hwfleet.workflows.engine import EngineError
from hwfleet.workflows.rpc import accept_response, commands_for
from hwfleet.workflows.service import GraphService

router = APIRouter(prefix="/api/v1", tags=["graphs"], dependencies=[Depends(require_token)])

_CODES = {"not_found": 404, "busy": 409, "state": 409}


def graph_service(request: Request) -> GraphService:
    return lookup(request, GraphService, "the graph engine is not running")


Graphs = Annotated[GraphService, Depends(graph_service)]
JsonBody = Annotated[dict[str, Any], Body()]


def _refused(exc: Exception) -> HTTPException:
    if isinstance(exc, DefinitionError):
        return HTTPException(422, {"msg": str(exc), "field": exc.field})
    code = _CODES.get(getattr(exc, "code", ""), 400)
    return HTTPException(code, str(exc))


@router.get("/graphs")
async def list_graphs(
    graphs: Graphs,
    active: bool = False,
    node: str | None = None,
    limit: int = Query(200, ge=1, le=5000),
) -> list[dict[str, Any]]:
    return await graphs.engine.list(active_only=active, node=node, limit=limit)


@router.post("/graphs", status_code=status.HTTP_201_CREATED)
async def run_graph(graphs: Graphs, body: JsonBody) -> dict[str, Any]:
    """``{name, nodes: [uuid…] | all: true | sku: NAME, options}`` → one graph per node."""
    name = body.get("name")
    nodes = body.get("nodes") or []
    if not isinstance(name, str) or not isinstance(nodes, list):
        raise HTTPException(422, "name must be a graph name and nodes a list of uuids")
    try:
        targets = await graphs.targets(
            [str(n) for n in nodes], all_nodes=bool(body.get("all")), sku=body.get("sku")
        )
        return {"graphs": await graphs.run_many(name, targets, body.get("options") or {})}
    except (EngineError, DefinitionError, ValueError) as exc:
        raise _refused(exc) from None


@router.get("/graphs/{graph_id}")
async def get_graph(
    graph_id: str, graphs: Graphs, wait: float = Query(0, ge=0, le=600)
) -> dict[str, Any]:
    """With ``wait``, hold the request until the graph ends or ``wait`` seconds pass."""
    graph = await (graphs.engine.wait(graph_id, wait) if wait else graphs.engine.get(graph_id))
    if graph is None:
        raise HTTPException(404, f"no graph {graph_id}")
    return graph


@router.post("/graphs/{graph_id}/{action}")
async def control_graph(graph_id: str, action: str, graphs: Graphs) -> dict[str, Any]:
    operations = {
        "cancel": graphs.engine.cancel,
        "pause": graphs.engine.pause,
        "resume": graphs.engine.resume,
    }
    if action not in operations:
        raise HTTPException(404, f"no action {action!r} (cancel, pause, resume)")
    try:
        return await operations[action](graph_id)
    except EngineError as exc:
        raise _refused(exc) from None


@router.get("/graph-library")
async def graph_library(graphs: Graphs) -> list[dict[str, Any]]:
    return (await graphs.engine.library()).graphs()


@router.get("/graph-library/{name}")
async def graph_definition(name: str, graphs: Graphs) -> dict[str, Any]:
    for body in (await graphs.engine.library()).graphs():
        if body["injectableName"] == name:
            return body
    raise HTTPException(404, f"no graph {name}")


@router.post("/graph-library", status_code=status.HTTP_201_CREATED)
async def define_graph(graphs: Graphs, body: JsonBody) -> dict[str, str]:
    try:
        return {"injectableName": await graphs.engine.define_graph(body)}
    except DefinitionError as exc:
        raise _refused(exc) from None


@router.get("/graph-tasks")
async def task_library(graphs: Graphs) -> list[dict[str, Any]]:
    return (await graphs.engine.library()).tasks()


@router.post("/graph-tasks", status_code=status.HTTP_201_CREATED)
async def define_task(graphs: Graphs, body: JsonBody) -> dict[str, str]:
    try:
        return {"injectableName": await graphs.engine.define_task(body)}
    except DefinitionError as exc:
        raise _refused(exc) from None


@router.get("/skus")
async def list_skus(graphs: Graphs) -> list[dict[str, Any]]:
    return [s.body for s in await graphs.skus()]


@router.get("/skus/{name}")
async def show_sku(name: str, graphs: Graphs) -> dict[str, Any]:
    for sku in await graphs.skus():
        if sku.name == name:
            return {**sku.body, "nodes": await graphs.nodes_of(name)}
    raise HTTPException(404, f"no SKU {name}")


@router.post("/skus", status_code=status.HTTP_201_CREATED)
async def define_sku(graphs: Graphs, body: JsonBody) -> dict[str, str]:
    try:
        return {"name": await graphs.define_sku(body)}
    except DefinitionError as exc:
        raise _refused(exc) from None


@router.get("/graphs/{graph_id}/node-credential")
async def node_credential(graph_id: str, graphs: Graphs) -> dict[str, Any]:
    """The credential a machine without an agent uses for its graph's commands (operator
    only): for a machine that does not get it from a boot profile's ``$commandsToken``."""
    graph = await graphs.engine.get(graph_id)
    if graph is None:
        raise HTTPException(404, f"no graph {graph_id}")
    if graphs.credentials is None or not graph["target"]:
        raise HTTPException(409, "this graph has no node credential (no target node)")
    if graph["status"] in ("succeeded", "failed", "cancelled"):
        raise HTTPException(409, f"graph {graph_id} has ended ({graph['status']})")
    token = graphs.credentials.mint(graph_id, graph["target"])
    return {"graphId": graph_id, "node": graph["target"], "token": token}


async def operator_or_node(node: str, request: Request, graphs: Graphs) -> None:
    """The operator token, or ``node``'s own credential while its graph is active."""
    header = request.headers.get("authorization", "")
    if token_matches(header, request.app.state.operator_token):
        return
    scheme, _, supplied = header.partition(" ")
    supplied = supplied.strip()
    if (
        scheme.lower() == "bearer"
        and graphs.credentials is not None
        and await graphs.credentials.valid(graphs.store, supplied, node)
    ):
        return
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        UNAUTHORIZED + "; or this node's credential while its graph runs",
        headers={"WWW-Authenticate": "Bearer"},
    )


#: The bootstrap pair: its own router, since a node's credential is good here and nowhere else.
node_router = APIRouter(prefix="/api/v1", tags=["graphs"], dependencies=[Depends(operator_or_node)])


@node_router.get("/nodes/{node}/commands")
async def request_commands(node: str, graphs: Graphs) -> dict[str, Any]:
    return await commands_for(graphs, node)


@node_router.post("/nodes/{node}/commands")
async def respond_commands(node: str, graphs: Graphs, body: JsonBody) -> dict[str, Any]:
    try:
        return await accept_response(graphs, node, body)
    except (EngineError, ValueError) as exc:
        raise _refused(exc) from None
