"""One transaction's worth of graph bookkeeping: finish a task, then advance its graph.

Shared by the runner (a task ended) and the engine (cancel, lost node): the task row,
the readiness of its successors, skipped tasks, the graph's end and the event rows all
commit together, so a crash between them cannot leave a graph half-advanced.
"""

from __future__ import annotations

from datetime import datetime

from hwfleet.store.events import EventRepository
from hwfleet.store.graphs import GraphRepository, TaskRow
from hwfleet.store.records import EventRecord
from hwfleet.workflows import events
from hwfleet.workflows.events import Event
from hwfleet.workflows.planner import SKIPPED, TaskView, plan


def view(row: TaskRow) -> TaskView:
    spec = row.spec
    return TaskView(
        id=row.id,
        label=row.label,
        state=row.state,
        ready=row.ready,
        wait_on=dict(spec.get("waitOn") or {}),
        ignore_failure=bool(spec.get("ignoreFailure")),
        error=row.error,
    )


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


async def advance_many(
    repo: GraphRepository, graph_ids: list[str], at: datetime, out: list[Event]
) -> bool:
    """:func:`advance` for many graphs with a constant number of statements (the runner's
    group commit): one read of the graphs, one of their tasks, one readiness UPDATE.

    The events are appended to ``out`` (the caller inserts them in one statement);
    returns whether any task became ready.
    """
    graph_rows = await repo.graphs_by_id(graph_ids)
    by_graph: dict[str, list[TaskRow]] = {}
    for row in await repo.tasks_of(list(graph_rows)):
        by_graph.setdefault(row.graph_id, []).append(row)
    ready: list[str] = []
    for graph_id, graph in graph_rows.items():
        result = plan([view(r) for r in by_graph.get(graph_id, [])])
        ready += result.ready
        if result.skipped:
            for row in await repo.cancel_unfinished(graph_id, SKIPPED, at, task_ids=result.skipped):
                out.append(task_end_event(row, graph.node))
        if result.graph_status is not None and await repo.finish_graph(
            graph_id, result.graph_status, at
        ):
            out.append(events.graph_finished(graph_id, graph.name, graph.node, result.graph_status))
    await repo.mark_ready(ready)
    return bool(ready)
