"""What the dashboard shows of task graphs: typed views of the engine's graph objects.

The graph engine answers the seed-003 graph object (camelCase JSON); each becomes a
frozen :class:`GraphView` (with its :class:`GraphTaskView` rows) here, so templates read
named fields. Used by the Graphs page (:mod:`hwfleet.web.graphs`) and the Device page.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from hwfleet.web.views import Body, from_body, text
from hwfleet.workflows.service import GraphService


def task_bodies(body: Body) -> list[Body]:
    """The objects of a graph's ``tasks`` list (anything else in it is ignored)."""
    raw = body.get("tasks")
    return [t for t in raw if isinstance(t, Mapping)] if isinstance(raw, list) else []


@dataclass(frozen=True, slots=True)
class GraphTaskView:
    label: str
    task_id: str
    task_name: str
    state: str
    attempts: int
    error: str


@dataclass(frozen=True, slots=True)
class GraphView:
    graph_id: str
    name: str
    target: str
    status: str
    created_at: str
    finished_at: str
    tasks: tuple[GraphTaskView, ...]

    @property
    def active(self) -> bool:
        return self.status in ("running", "paused")

    @property
    def done_count(self) -> int:
        return sum(t.state not in ("pending", "running") for t in self.tasks)

    @classmethod
    def of(cls, body: Body) -> GraphView:
        tasks = tuple(
            from_body(GraphTaskView, t, task_id="taskId", task_name="taskName")
            for t in task_bodies(body)
        )
        return cls(
            text(body, "graphId"),
            text(body, "name"),
            text(body, "target"),
            text(body, "status"),
            text(body, "createdAt"),
            text(body, "finishedAt"),
            tasks,
        )


@dataclass(frozen=True, slots=True)
class LibraryGraphView:
    name: str
    friendly: str
    labels: tuple[str, ...]
    options: str

    @classmethod
    def of(cls, body: Body) -> LibraryGraphView:
        labels = tuple(text(t, "label") for t in task_bodies(body))
        options = body.get("options")
        shown = json.dumps(options, sort_keys=True) if options else ""
        return cls(text(body, "injectableName"), text(body, "friendlyName"), labels, shown)


async def library_of(graphs: GraphService) -> list[LibraryGraphView]:
    library = await graphs.engine.library()
    return sorted((LibraryGraphView.of(g) for g in library.graphs()), key=lambda g: g.name)


async def device_graphs(
    graphs: GraphService, uuid: str
) -> tuple[GraphView | None, list[GraphView]]:
    """A device's active graph (if any) and its recent ones, for the Device page."""
    active = await graphs.engine.active_for(uuid)
    recent = await graphs.engine.list(active_only=False, node=uuid, limit=10)
    return (GraphView.of(active) if active else None), [GraphView.of(g) for g in recent]
