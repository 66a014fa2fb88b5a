"""Graph and task definitions by name: the shipped library plus what operators defined.

The shipped JSON lives in ``hwfleet/workflows/library/`` as package data. Stored
definitions (``defineTaskGraph`` / ``defineTask``) override shipped ones of the same
``injectableName``. A :class:`Library` is a snapshot: the engine makes one from the
store's rows when it needs one, so every replica sees a definition as soon as it is
committed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

from hwfleet.workflows.definitions import (
    DefinitionError,
    GraphDef,
    TaskDef,
    parse_graph,
    parse_task,
)
from hwfleet.workflows.registry import BaseTaskRegistry


def shipped(kind: str) -> list[dict[str, Any]]:
    """The shipped ``graphs`` or ``tasks`` definitions (package data)."""
    text = resources.files("hwfleet.workflows").joinpath("library", f"{kind}.json").read_text()
    data: list[dict[str, Any]] = json.loads(text)
    return data


class Library:
    """Look definitions up by name and check new ones against everything known."""

    def __init__(
        self,
        bases: BaseTaskRegistry,
        graphs: Iterable[Mapping[str, Any]],
        tasks: Iterable[Mapping[str, Any]],
    ) -> None:
        self.bases = bases
        self._graph_bodies: dict[str, dict[str, Any]] = {}
        self._task_bodies: dict[str, dict[str, Any]] = {}
        # Parsed on first use; a snapshot never changes, so neither do these.
        self._tasks: dict[str, TaskDef] = {}
        self._graphs: dict[str, GraphDef] = {}
        for body in graphs:
            self._graph_bodies[str(body["injectableName"])] = dict(body)
        for body in tasks:
            self._task_bodies[str(body["injectableName"])] = dict(body)

    def task(self, name: str) -> TaskDef | None:
        if name not in self._tasks:
            body = self._task_bodies.get(name)
            if body is None:
                return None
            self._tasks[name] = parse_task(body, self.bases.get)
        return self._tasks[name]

    def graph(self, name: str) -> GraphDef | None:
        if name not in self._graphs:
            body = self._graph_bodies.get(name)
            if body is None:
                return None
            self._graphs[name] = parse_graph(body, self.task, self.bases.get)
        return self._graphs[name]

    def check_graph(self, body: Any) -> GraphDef:
        """Validate a new graph definition; raises :class:`DefinitionError` naming the field."""
        return parse_graph(body, self.task, self.bases.get)

    def check_task(self, body: Any) -> TaskDef:
        return parse_task(body, self.bases.get)

    def graphs(self) -> list[dict[str, Any]]:
        return [self._graph_bodies[k] for k in sorted(self._graph_bodies)]

    def tasks(self) -> list[dict[str, Any]]:
        return [self._task_bodies[k] for k in sorted(self._task_bodies)]

    def graph_names(self) -> list[str]:
        return sorted(self._graph_bodies)

    def check_shipped(self) -> None:
        """Every shipped graph resolves (a test and the engine's start call this)."""
        for name in self.graph_names():
            try:
                self.graph(name)
            except DefinitionError as exc:
                raise DefinitionError(exc.field, f"shipped graph {name}: {exc.msg}") from None
