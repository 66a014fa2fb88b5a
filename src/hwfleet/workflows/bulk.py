"""Starting one graph on many nodes in one transaction (``--all``, ``--sku``, the bench).

A node that is unknown or already runs a graph is reported and skipped; the others
start together: one INSERT for the graphs, one for their tasks, one for the events.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import TYPE_CHECKING, Any

from hwfleet.store.events import EventRepository
from hwfleet.store.graphs import GraphRepository
from hwfleet.types import utcnow
from hwfleet.workflows import events
from hwfleet.workflows.definitions import check_required, task_options
from hwfleet.workflows.runner import announce

if TYPE_CHECKING:
    from hwfleet.workflows.engine import GraphEngine


async def start_many(
    engine: GraphEngine, name: str, nodes: list[str], options: dict[str, Any]
) -> list[dict[str, Any]]:
    """``[{node, graphId} | {node, error, code}]`` in the order of ``nodes``."""
    from hwfleet.workflows.engine import EngineError

    if not isinstance(options, dict):
        raise EngineError("options must be a JSON object")
    at = utcnow()
    by_id: dict[str, list[dict[str, Any]]] = {}

    async def create(tx: Any) -> tuple[list[dict[str, Any]], list[Any]]:
        repo = GraphRepository(tx.conn)
        graph = (await engine._library_in(repo)).graph(name)
        if graph is None:
            raise EngineError(f"unknown graph {name!r}", "not_found")
        specs = []
        for i, entry in enumerate(graph.tasks):
            opts = task_options(graph, entry, options)
            check_required(entry, opts, engine.bases.get, f"tasks[{i}]", run=True)
            base = engine.bases.get(entry.task.implements)
            assert base is not None  # parse_graph checked it
            specs.append((i, entry, opts, base))
        known = await tx.devices.existing(nodes)
        busy = await repo.busy_nodes(nodes)
        results: list[dict[str, Any]] = []
        graph_rows: list[dict[str, Any]] = []
        task_rows: list[dict[str, Any]] = []
        items = []
        for node in nodes:
            if node not in known:
                results.append(
                    {"node": node, "error": f"unknown node {node!r}", "code": "not_found"}
                )
                continue
            if node in busy:
                results.append(
                    {"node": node, "error": f"node {node} already runs a graph", "code": "busy"}
                )
                continue
            busy.add(node)
            graph_id = str(uuidlib.uuid4())
            graph_rows.append(
                {"id": graph_id, "name": name, "node": node, "status": "running",
                 "options": options, "context": {}, "parent_task": None, "created_at": at}
            )  # fmt: skip
            rows = [engine._task_row(graph_id, *spec) for spec in specs]
            by_id[graph_id] = rows
            task_rows += rows
            items.append(events.graph_started(graph_id, name, node))
            results.append({"node": node, "graphId": graph_id})
        await repo.create_many(graph_rows, task_rows)
        records = await EventRepository(tx.conn).add_many(items, at=at) if items else []
        return results, records

    results, records = await engine.store.write(create)
    shapes = engine.runner.shapes
    for item in results:
        if "graphId" in item:
            shapes.prime(
                item["graphId"],
                item["node"],
                ((r["id"], r["spec"]) for r in by_id[item["graphId"]]),
            )
    await announce(engine._events, records)
    engine.runner.wake()
    return results
