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
    graph = await repo.get_graph(graph_id)
    if graph is None:
        return [], False
    rows = await repo.tasks_of([graph_id])
    result = plan([view(r) for r in rows])
    await repo.mark_ready(result.ready)
    records: list[EventRecord] = []
    if result.skipped:
        for row in await repo.cancel_unfinished(graph_id, SKIPPED, at, task_ids=result.skipped):
            records += await record_task_end(repo, ev, row, graph.node, at)
    if result.graph_status is not None and await repo.finish_graph(
        graph_id, result.graph_status, at
    ):
        key, body, dev = events.graph_finished(
            graph_id, graph.name, graph.node, result.graph_status
        )
        records.append(await ev.add(key, body, device_uuid=dev, at=at))
    return records, bool(result.ready)
