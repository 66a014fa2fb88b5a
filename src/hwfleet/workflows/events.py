"""Routing keys and bodies of the graph events on ``events`` (DESIGN §11)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from hwfleet.bus.topology import EventKey, word

Event = tuple[str, dict[str, Any], str | None]


class Announcer(Protocol):
    """Publishes an event whose row is already committed (the controller's EventPublisher)."""

    async def announce(
        self, routing_key: str, payload: dict[str, Any], *, event_id: int | None, at: datetime
    ) -> None: ...

    async def progress(self, routing_key: str, payload: dict[str, Any]) -> None:
        """Unrecorded progress for dashboards (a task started, a graph paused)."""
        ...


def graph_started(graph_id: str, name: str, node: str | None) -> Event:
    body = {"graphId": graph_id, "graphName": name, "nodeId": node, "status": "running"}
    return f"graph.started.{word(graph_id)}", body, node


def graph_finished(graph_id: str, name: str, node: str | None, status: str) -> Event:
    body = {"graphId": graph_id, "graphName": name, "nodeId": node, "status": status}
    return f"graph.finished.{word(graph_id)}", body, node


def task_finished(
    task_id: str, graph_id: str, label: str, state: str, error: str | None, node: str | None
) -> Event:
    body: dict[str, Any] = {"taskId": task_id, "graphId": graph_id, "label": label, "state": state}
    if error:
        body["error"] = error
    return EventKey.task_finished(task_id), body, node


def sku_assigned(node: str, sku: str) -> Event:
    return f"sku.assigned.{word(node)}", {"nodeId": node, "sku": sku}, node


def graph_progress(graph_id: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A ``progress`` message about a graph: a task of it started, or it was paused or resumed
    (none of which records an event; docs/dashboard.md)."""
    return f"graph.{word(graph_id)}", {"graphId": graph_id, **body}
