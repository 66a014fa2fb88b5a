"""The Graphs and Images pages' typed views: graph objects (seed 003) and image sizes."""

from __future__ import annotations

from hwfleet.web.graphviews import GraphView, LibraryGraphView
from hwfleet.web.images import human_size


def test_a_graph_object_becomes_a_typed_view() -> None:
    body: dict[str, object] = {
        "graphId": "g-1",
        "name": "Graph.Hwfleet.BurnIn",
        "target": "u-1",
        "status": "running",
        "createdAt": "2026-01-01T00:00:00+00:00",
        "finishedAt": None,
        "tasks": [
            {
                "label": "inventory",
                "taskId": "t1",
                "taskName": "Task.Hwfleet.Inventory",
                "state": "succeeded",
                "attempts": 1,
            },
            {
                "label": "soak",
                "taskId": "t2",
                "taskName": "Task.Hwfleet.Wait",
                "state": "running",
                "attempts": 1,
            },
            {"label": "qc", "taskId": "t3", "state": "failed", "attempts": 2, "error": "boom"},
            "not a task",
        ],
    }
    graph = GraphView.of(body)
    assert graph.active and graph.finished_at == ""
    assert [t.label for t in graph.tasks] == ["inventory", "soak", "qc"]
    assert graph.done_count == 2
    assert graph.tasks[2].error == "boom" and graph.tasks[2].attempts == 2
    assert graph.tasks[2].task_name == ""  # missing: empty, not an error
    assert not GraphView.of({**body, "status": "cancelled"}).active
    assert GraphView.of({"tasks": "junk"}).tasks == ()


def test_a_library_graph_lists_its_tasks_and_options() -> None:
    view = LibraryGraphView.of(
        {
            "injectableName": "Graph.X",
            "friendlyName": "X",
            "options": {"soak": {"seconds": 60}},
            "tasks": [{"label": "a"}, {"label": "b"}],
        }
    )
    assert view.labels == ("a", "b") and view.options == '{"soak": {"seconds": 60}}'
    assert LibraryGraphView.of({"injectableName": "Graph.Y", "tasks": []}).options == ""


def test_sizes_read_in_binary_units() -> None:
    assert human_size(0) == "0 B" and human_size(1023) == "1023 B"
    assert human_size(65536) == "64.0 KiB"
    assert human_size(3 * 1024**3 // 2) == "1.5 GiB"
    assert human_size(5 * 1024**5) == "5120.0 TiB"
