"""One transaction's worth of graph bookkeeping: finish a task, then advance its graph.

Shared by the runner (a task ended) and the engine (cancel, lost node): the task row,
the readiness of its successors, skipped tasks, the graph's end and the event rows all
commit together, so a crash between them cannot leave a graph half-advanced.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from hwfleet.store.events import EventRepository
from hwfleet.store.graphs import GraphRepository, TaskRow
from hwfleet.store.records import EventRecord
from hwfleet.workflows import events
from hwfleet.workflows.events import Event
from hwfleet.workflows.planner import SKIPPED, TaskView, plan


def task_end_event(row: TaskRow, node: str | None) -> Event:
    return events.task_finished(row.id, row.graph_id, row.label, row.state, row.error, node)


async def record_task_end(
    repo: GraphRepository, ev: EventRepository, row: TaskRow, node: str | None, at: datetime
) -> list[EventRecord]:
    key, body, dev = events.task_finished(
        row.id, row.graph_id, row.label, row.state, row.error, node
    )
    return [await ev.add(key, body, device_uuid=dev, at=at)]


async def advance(
    repo: GraphRepository, ev: EventRepository, graph_id: str, at: datetime
) -> tuple[list[EventRecord], bool]:
    """Mark ready tasks, skip unreachable ones, end the graph when nothing is left.

    Returns the event rows written and whether any task became ready.
    """
    pending: list[Event] = []
    ready = await advance_many(repo, [graph_id], at, pending)
    return await ev.add_many(pending, at=at), ready


class Shapes:
    """What never changes once a graph is created: each task's ``waitOn`` and ``ignoreFailure``
    and each graph's node. Kept while graphs run so that advancing one reads no JSON and
    claiming a task needs no read of its graph; a graph not here is read once.

    Bounded: past ``limit`` graphs the oldest are forgotten (and read again if needed).
    """

    __slots__ = ("_limit", "_nodes", "_tasks")

    def __init__(self, limit: int = 20_000) -> None:
        self._limit = limit
        self._tasks: dict[str, dict[str, tuple[dict[str, str], bool]]] = {}
        self._nodes: dict[str, str | None] = {}

    def prime(self, graph_id: str, node: str | None, specs: Iterable[tuple[str, Any]]) -> None:
        """Remember a graph's shape (its creator has the rows at hand)."""
        self._nodes[graph_id] = node
        shape = self._tasks.setdefault(graph_id, {})
        for task_id, spec in specs:
            shape[task_id] = (dict(spec.get("waitOn") or {}), bool(spec.get("ignoreFailure")))
        while len(self._tasks) > self._limit:
            oldest = next(iter(self._tasks))
            del self._tasks[oldest]
            self._nodes.pop(oldest, None)

    def forget(self, graph_id: str) -> None:
        self._tasks.pop(graph_id, None)
        self._nodes.pop(graph_id, None)

    def node(self, graph_id: str) -> tuple[bool, str | None]:
        """``(known, node)``."""
        return graph_id in self._nodes, self._nodes.get(graph_id)

    async def load(
        self, repo: GraphRepository, heads: dict[str, tuple[str, str | None, str]]
    ) -> None:
        missing = [g for g in heads if g not in self._tasks]
        specs: dict[str, list[tuple[str, Any]]] = {g: [] for g in missing}
        for task_id, graph_id, spec in await repo.specs_of(missing):
            specs[graph_id].append((task_id, spec))
        for graph_id, rows in specs.items():
            self.prime(graph_id, heads[graph_id][1], rows)

    def task(self, graph_id: str, task_id: str) -> tuple[dict[str, str], bool]:
        return self._tasks.get(graph_id, {}).get(task_id, ({}, False))


async def advance_many(
    repo: GraphRepository,
    graph_ids: list[str],
    at: datetime,
    out: list[Event],
    shapes: Shapes | None = None,
) -> bool:
    """:func:`advance` for many graphs with a constant number of statements (the runner's
    group commit): one read of the graphs' heads, one of their tasks' states (no JSON: the
    shapes come from ``shapes``), one readiness UPDATE, one UPDATE per graph end status.

    The events are appended to ``out`` (the caller inserts them in one statement);
    returns whether any task became ready.
    """
    shapes = shapes if shapes is not None else Shapes()
    heads = await repo.heads_of(graph_ids)
    await shapes.load(repo, heads)
    by_graph: dict[str, list[TaskView]] = {}
    for task_id, graph_id, label, state, is_ready, error in await repo.progress_of(list(heads)):
        wait_on, ignore = shapes.task(graph_id, task_id)
        by_graph.setdefault(graph_id, []).append(
            TaskView(task_id, label, state, is_ready, wait_on, ignore, error)
        )
    ready: list[str] = []
    ends: dict[str, str] = {}
    for graph_id, (_, node, _) in heads.items():
        result = plan(by_graph.get(graph_id, []))
        ready += result.ready
        if result.skipped:
            for row in await repo.cancel_unfinished(graph_id, SKIPPED, at, task_ids=result.skipped):
                out.append(task_end_event(row, node))
        if result.graph_status is not None:
            ends[graph_id] = result.graph_status
    for graph_id in sorted(await repo.finish_graphs(ends, at) if ends else ()):
        name, node, _ = heads[graph_id]
        out.append(events.graph_finished(graph_id, name, node, ends[graph_id]))
        shapes.forget(graph_id)
    await repo.mark_ready(ready)
    return bool(ready)
