"""Definitions: RackHD's format accepted, bad input refused with the field named."""

from __future__ import annotations

from typing import Any

import pytest

from hwfleet.workflows.definitions import DefinitionError
from hwfleet.workflows.library import Library, shipped
from hwfleet.workflows.registry import BaseTaskRegistry


@pytest.fixture
def library() -> Library:
    return Library(BaseTaskRegistry(plugins=False), shipped("graphs"), shipped("tasks"))


def graph(*tasks: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"friendlyName": "T", "injectableName": "Graph.T", "tasks": list(tasks), **extra}


def test_shipped_library_resolves(library: Library) -> None:
    library.check_shipped()
    names = library.graph_names()
    for name in ("Discovery", "Decommission", "Reimage", "BurnIn"):
        assert f"Graph.Hwfleet.{name}" in names
    reimage = library.graph("Graph.Hwfleet.Reimage")
    assert reimage is not None
    methods = [t.task.options["method"] for t in reimage.tasks]
    assert methods == ["standby.cache_images", "standby.prepare_image", "standby.run_image"]


def test_rackhd_graph_with_inline_task_and_overrides(library: Library) -> None:
    g = library.check_graph(
        graph(
            {
                "label": "a",
                "taskDefinition": {
                    "friendlyName": "x",
                    "injectableName": "Task.X",
                    "implementsTask": "Task.Base.Wait",
                    "options": {"seconds": 1},
                    "properties": {},
                },
            },
            {"label": "b", "taskName": "Task.Hwfleet.Ping", "waitOn": {"a": "finished"}},
            options={"defaults": {"seconds": 2}, "b": {"params": {"x": 1}}},
        )
    )
    assert [t.label for t in g.tasks] == ["a", "b"]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ("not json object", "definition", "JSON object"),
        ({"tasks": []}, "injectableName", "required"),
        (graph(), "tasks", "non-empty"),
        (graph({"label": "a", "taskName": "Task.Nope"}), "tasks[0].taskName", "unknown task"),
        (
            graph({"label": "a", "taskName": "Task.Hwfleet.Ping", "waitOn": {"zz": "succeeded"}}),
            "tasks[0].waitOn.zz",
            "unknown label",
        ),
        (
            graph({"label": "a", "taskName": "Task.Hwfleet.Ping", "waitOn": {"a": "bogus"}}),
            "tasks[0].waitOn.a",
            "must be one of",
        ),
        (
            graph(
                {"label": "a", "taskName": "Task.Hwfleet.Ping", "waitOn": {"b": "succeeded"}},
                {"label": "b", "taskName": "Task.Hwfleet.Ping", "waitOn": {"a": "succeeded"}},
            ),
            "tasks[1].waitOn.a",
            "cycle",
        ),
        (
            graph(
                {"label": "a", "taskName": "Task.Hwfleet.Ping"},
                {"label": "a", "taskName": "Task.Hwfleet.Ping"},
            ),
            "tasks[1].label",
            "duplicate",
        ),
        (
            graph(
                {
                    "label": "a",
                    "taskDefinition": {
                        "injectableName": "Task.Y",
                        "implementsTask": "Task.Base.Agent.Run",
                        "options": {},
                    },
                }
            ),
            "tasks[0].options.method",
            "required option",
        ),
        (
            graph({"label": "a", "taskName": "Task.Hwfleet.Ping"}, options={"zz": {}}),
            "options.zz",
            "no task has the label",
        ),
        (
            graph({"label": "a", "taskName": "Task.Hwfleet.Ping", "ignoreFailure": "yes"}),
            "tasks[0].ignoreFailure",
            "true or false",
        ),
    ],
)
def test_bad_definitions_name_the_field(
    library: Library, body: Any, field: str, words: str
) -> None:
    with pytest.raises(DefinitionError) as info:
        library.check_graph(body)
    assert info.value.field == field
    assert words in str(info.value)


def test_unknown_base_task_is_refused(library: Library) -> None:
    with pytest.raises(DefinitionError, match="implementsTask"):
        library.check_task({"injectableName": "Task.Z", "implementsTask": "Task.Base.Nope"})


def test_self_wait_is_a_cycle(library: Library) -> None:
    body = graph({"label": "a", "taskName": "Task.Hwfleet.Ping", "waitOn": {"a": "finished"}})
    with pytest.raises(DefinitionError, match="cycle in waitOn: a -> a"):
        library.check_graph(body)


def test_registry_takes_plugins_but_not_over_builtins() -> None:
    from typing import ClassVar

    from hwfleet.workflows.basetasks import BaseTask, TaskContext, Wait

    class Blink(BaseTask):
        name: ClassVar[str] = "Task.Vendor.Blink"
        required_options: ClassVar[tuple[str, ...]] = ("times",)

        async def run(self, ctx: TaskContext) -> dict[str, Any]:
            return {}

    class FakeWait(Wait):
        pass

    registry = BaseTaskRegistry((Blink,), plugins=False)
    assert registry.get("Task.Vendor.Blink") is Blink
    with pytest.raises(ValueError, match="already defined"):
        registry.add(FakeWait)
    library = Library(registry, [], [])
    with pytest.raises(DefinitionError, match=r"tasks\[0\]\.options\.times"):
        library.check_graph(
            graph(
                {
                    "label": "b",
                    "taskDefinition": {
                        "injectableName": "Task.B",
                        "implementsTask": "Task.Vendor.Blink",
                    },
                }
            )
        )


def test_option_precedence(library: Library) -> None:
    from hwfleet.workflows.definitions import task_options

    g = library.check_graph(
        graph(
            {"label": "w", "taskName": "Task.Hwfleet.Wait"},
            options={"defaults": {"seconds": 2, "unrelated": 1}, "w": {"seconds": 3}},
        )
    )
    entry = g.tasks[0]
    assert task_options(g, entry, {}) == {"seconds": 3}
    assert task_options(g, entry, {"defaults": {"seconds": 9}}) == {"seconds": 9}
    assert task_options(g, entry, {"w": {"seconds": 7}, "defaults": {"seconds": 9}}) == {
        "seconds": 7
    }
