"""RackHD-format graph and task definitions, validated with errors that name the field.

A graph: ``{friendlyName, injectableName, options: {defaults: {...}, <label>: {...}},
tasks: [{label, taskName | taskDefinition, waitOn: {<label>: succeeded|failed|finished},
ignoreFailure, retries?, timeout?}]}``. A task: ``{friendlyName, injectableName,
implementsTask, options, properties}`` (DESIGN §11). Validation is pure: the caller
supplies how to look up task names and base tasks, so the same code checks a definition
arriving over RPC, REST or from the shipped library.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

WAIT_STATES = frozenset({"succeeded", "failed", "finished"})
#: Every task state; the last four are "finished".
TASK_STATES = ("pending", "running", "succeeded", "failed", "cancelled", "timeout")
FINISHED = frozenset(TASK_STATES[2:])
GRAPH_STATES = ("running", "paused", "succeeded", "failed", "cancelled")
GRAPH_DONE = frozenset({"succeeded", "failed", "cancelled"})
_NAME_MAX = 200


class DefinitionError(ValueError):
    """A definition is refused; ``field`` is the JSON path of what is wrong."""

    def __init__(self, field_path: str, msg: str) -> None:
        super().__init__(f"{field_path}: {msg}")
        self.field = field_path
        self.msg = msg


@dataclass(frozen=True, slots=True)
class TaskDef:
    """A task definition: what a graph's ``taskName`` refers to."""

    injectable_name: str
    friendly_name: str
    implements: str
    options: dict[str, Any]
    properties: dict[str, Any]
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class GraphTaskDef:
    """One entry of a graph's ``tasks`` list."""

    label: str
    task: TaskDef
    wait_on: dict[str, str]
    ignore_failure: bool
    retries: int | None
    timeout: float | None


@dataclass(frozen=True, slots=True)
class GraphDef:
    injectable_name: str
    friendly_name: str
    options: dict[str, dict[str, Any]]
    tasks: tuple[GraphTaskDef, ...]
    body: dict[str, Any] = field(repr=False)


def _obj(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DefinitionError(path, f"must be a JSON object, not {type(value).__name__}")
    return value


def _name(body: Mapping[str, Any], key: str, path: str, *, required: bool = True) -> str:
    value = body.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise DefinitionError(f"{path}{key}", "is required and must be a non-empty string")
    if len(value) > _NAME_MAX or any(c in value for c in "*#\n"):
        raise DefinitionError(f"{path}{key}", f"{value[:60]!r} is not a usable name")
    return value


def _number(value: Any, path: str, *, integer: bool) -> float | int | None:
    if value is None:
        return None
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or value < 0:
        raise DefinitionError(path, "must be a non-negative number")
    return value


def parse_task(body: Any, bases: Callable[[str], Any | None], path: str = "") -> TaskDef:
    """A task definition; ``bases(name)`` returns the base task class or None."""
    body = _obj(body, path.rstrip(".") or "definition")
    name = _name(body, "injectableName", path)
    implements = _name(body, "implementsTask", path)
    base = bases(implements)
    if base is None:
        raise DefinitionError(f"{path}implementsTask", f"unknown base task {implements!r}")
    options = _obj(body.get("options", {}), f"{path}options")
    properties = _obj(body.get("properties", {}), f"{path}properties")
    return TaskDef(
        injectable_name=name,
        friendly_name=str(body.get("friendlyName") or name),
        implements=implements,
        options=options,
        properties=properties,
        body=body,
    )


def parse_graph(
    body: Any,
    tasks: Callable[[str], TaskDef | None],
    bases: Callable[[str], Any | None],
) -> GraphDef:
    """A graph definition checked end to end; raises :class:`DefinitionError`."""
    body = _obj(body, "definition")
    name = _name(body, "injectableName", "")
    options = _obj(body.get("options", {}), "options")
    for key, value in options.items():
        _obj(value, f"options.{key}")
    entries = body.get("tasks")
    if not isinstance(entries, list) or not entries:
        raise DefinitionError("tasks", "is required and must be a non-empty list")
    parsed: list[GraphTaskDef] = []
    labels: set[str] = set()
    for i, raw in enumerate(entries):
        path = f"tasks[{i}]."
        entry = _obj(raw, f"tasks[{i}]")
        label = _name(entry, "label", path)
        if label in labels:
            raise DefinitionError(f"{path}label", f"duplicate label {label!r}")
        labels.add(label)
        parsed.append(_graph_task(entry, label, path, tasks, bases))
    for key in options:
        if key != "defaults" and key not in labels:
            raise DefinitionError(f"options.{key}", f"no task has the label {key!r}")
    for i, item in enumerate(parsed):
        for other in item.wait_on:
            if other not in labels:
                raise DefinitionError(f"tasks[{i}].waitOn.{other}", f"unknown label {other!r}")
    _check_acyclic(parsed)
    graph = GraphDef(
        injectable_name=name,
        friendly_name=str(body.get("friendlyName") or name),
        options={k: dict(v) for k, v in options.items()},
        tasks=tuple(parsed),
        body=body,
    )
    for i, item in enumerate(parsed):
        check_required(item, task_options(graph, item, {}), bases, f"tasks[{i}]", run=False)
    return graph


def _graph_task(
    entry: dict[str, Any],
    label: str,
    path: str,
    tasks: Callable[[str], TaskDef | None],
    bases: Callable[[str], Any | None],
) -> GraphTaskDef:
    if "taskDefinition" in entry:
        task = parse_task(entry["taskDefinition"], bases, f"{path}taskDefinition.")
    else:
        task_name = _name(entry, "taskName", path)
        found = tasks(task_name)
        if found is None:
            raise DefinitionError(f"{path}taskName", f"unknown task {task_name!r}")
        task = found
    wait_on = _obj(entry.get("waitOn", {}), f"{path}waitOn")
    for other, state in wait_on.items():
        if state not in WAIT_STATES:
            raise DefinitionError(
                f"{path}waitOn.{other}", f"must be one of {', '.join(sorted(WAIT_STATES))}"
            )
    ignore = entry.get("ignoreFailure", False)
    if not isinstance(ignore, bool):
        raise DefinitionError(f"{path}ignoreFailure", "must be true or false")
    retries = _number(entry.get("retries"), f"{path}retries", integer=True)
    timeout = _number(entry.get("timeout"), f"{path}timeout", integer=False)
    return GraphTaskDef(
        label=label,
        task=task,
        wait_on=dict(wait_on),
        ignore_failure=ignore,
        retries=None if retries is None else int(retries),
        timeout=None if timeout is None else float(timeout),
    )


def _check_acyclic(entries: list[GraphTaskDef]) -> None:
    """Depth-first search; the error names the waitOn edge that closes the cycle."""
    edges = {e.label: list(e.wait_on) for e in entries}
    index = {e.label: i for i, e in enumerate(entries)}
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(label: str, trail: list[str]) -> None:
        state[label] = 1
        for other in edges[label]:
            if state.get(other) == 1:
                path = [*trail, label]
                cycle = " -> ".join([*path[path.index(other) :], other])
                raise DefinitionError(
                    f"tasks[{index[label]}].waitOn.{other}", f"cycle in waitOn: {cycle}"
                )
            if other not in state:
                visit(other, [*trail, label])
        state[label] = 2

    for entry in entries:
        if entry.label not in state:
            visit(entry.label, [])


def task_options(graph: GraphDef, entry: GraphTaskDef, run: Mapping[str, Any]) -> dict[str, Any]:
    """A task's options: its definition's, then graph defaults, label overrides, run options.

    As RackHD: ``defaults`` only fill options the task declares; a label's block and
    the run's options (``defaults`` / ``<label>``) override.
    """
    merged = dict(entry.task.options)
    for source in (graph.options, run):
        defaults = source.get("defaults") or {}
        for key, value in defaults.items():
            if key in merged:
                merged[key] = value
        merged.update(source.get(entry.label) or {})
    return merged


def check_required(
    entry: GraphTaskDef,
    options: Mapping[str, Any],
    bases: Callable[[str], Any | None],
    path: str,
    *,
    run: bool,
) -> None:
    """At define time a required option must be declared (``null`` = "give it at run");
    at run time it must have a value."""
    base = bases(entry.task.implements)
    required: tuple[str, ...] = getattr(base, "required_options", ())
    for key in required:
        missing = options.get(key) is None if run else key not in options
        if missing:
            raise DefinitionError(
                f"{path}.options.{key}",
                f"required option {key!r} of {entry.task.implements} has no value "
                f"(set it in the task, options.defaults or options.{entry.label})",
            )
