"""The built-in base tasks of DESIGN §11; a task definition's ``implementsTask`` names one.

A base task is a class with ``name``, ``required_options``, ``destructive(options)`` and
``async run(ctx) -> dict`` (the result); it raises :class:`TaskFailedError` to fail with a
reason. Third-party ones come through the ``hwfleet.graph_tasks`` entry-point group
(:mod:`hwfleet.workflows.registry`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from hwfleet.protocol import methods


class TaskFailedError(Exception):
    """The task failed; the message is stored as the task's ``error``."""


class AgentPort(Protocol):
    """How a task reaches the graph's node (the controller's existing task path)."""

    async def call(self, node: str, method: str, params: dict[str, Any]) -> dict[str, Any]: ...

    async def run_long(self, node: str, method: str, params: dict[str, Any]) -> dict[str, Any]: ...


class GraphPort(Protocol):
    async def run_child(
        self, parent_task: str, name: str, node: str | None, options: dict[str, Any]
    ) -> str: ...

    async def wait_graph(self, graph_id: str) -> str: ...


@dataclass(slots=True)
class TaskContext:
    """What a running task knows and may use."""

    task_id: str
    graph_id: str
    label: str
    node: str | None
    options: dict[str, Any]
    attempt: int
    agent: AgentPort
    graphs: GraphPort
    set_properties: Callable[[dict[str, Any]], Awaitable[None]]
    wait_response: Callable[[], Awaitable[dict[str, Any]]]
    assign_sku: Callable[[str], Awaitable[str | None]]
    http: Callable[[str, str, Any], Awaitable[tuple[int, str]]]

    def need_node(self) -> str:
        if not self.node:
            raise TaskFailedError(f"{self.label}: this task needs the graph to have a target node")
        return self.node


class BaseTask:
    name: ClassVar[str] = ""
    required_options: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def destructive(cls, options: dict[str, Any]) -> bool:
        return False

    async def run(self, ctx: TaskContext) -> dict[str, Any]:
        raise NotImplementedError


class AgentRun(BaseTask):
    """One agent method on the node; long methods finish on their ``task_status``."""

    name = "Task.Base.Agent.Run"
    required_options = ("method",)

    @classmethod
    def destructive(cls, options: dict[str, Any]) -> bool:
        return methods.is_long(str(options.get("method", "")))

    async def run(self, ctx: TaskContext) -> dict[str, Any]:
        node = ctx.need_node()
        method = methods.canonical(str(ctx.options["method"]))
        params = ctx.options.get("params") or {}
        if not isinstance(params, dict):
            raise TaskFailedError("option 'params' must be a JSON object")
        if methods.is_long(method):
            return await ctx.agent.run_long(node, method, dict(params))
        return await ctx.agent.call(node, method, dict(params))


class Wait(BaseTask):
    name = "Task.Base.Wait"
    required_options = ("seconds",)

    async def run(self, ctx: TaskContext) -> dict[str, Any]:
        seconds = ctx.options["seconds"]
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise TaskFailedError("option 'seconds' must be a non-negative number")
        await asyncio.sleep(seconds)  # waiting is this task's whole purpose
        return {"waited": seconds}


class EvaluateCondition(BaseTask):
    name = "Task.Base.Evaluate.Condition"
    required_options = ("when",)

    async def run(self, ctx: TaskContext) -> dict[str, Any]:
        when = str(ctx.options["when"]).strip().lower()
        if when not in ("true", "false"):
            raise TaskFailedError(f'option \'when\' must be "true" or "false", not {when!r}')
        if when == "false":
            raise TaskFailedError("condition is false")
        return {"when": True}


class GraphRun(BaseTask):
    name = "Task.Base.Graph.Run"
    required_options = ("graphName",)

    async def run(self, ctx: TaskContext) -> dict[str, Any]:
        options = ctx.options.get("graphOptions") or {}
        if not isinstance(options, dict):
            raise TaskFailedError("option 'graphOptions' must be a JSON object")
        child = await ctx.graphs.run_child(
            ctx.task_id, str(ctx.options["graphName"]), ctx.node, options
        )
        status = await ctx.graphs.wait_graph(child)
        if status != "succeeded":
            raise TaskFailedError(f"graph {child} ended {status}")
        return {"graphId": child, "status": status}


class Http(BaseTask):
    name = "Task.Base.Http"
    required_options = ("url",)

    async def run(self, ctx: TaskContext) -> dict[str, Any]:
        method = str(ctx.options.get("method") or "GET").upper()
        code, text = await ctx.http(method, str(ctx.options["url"]), ctx.options.get("body"))
        if code >= 400:
            raise TaskFailedError(f"{method} {ctx.options['url']} answered {code}: {text[:200]}")
        return {"status": code, "body": text[:4096]}


class SkuGenerate(BaseTask):
    name = "Task.Base.Sku.Generate"

    async def run(self, ctx: TaskContext) -> dict[str, Any]:
        sku = await ctx.assign_sku(ctx.need_node())
        return {"sku": sku}


class LinuxCommands(BaseTask):
    """RackHD's bootstrap pair: the node fetches ``commands`` (requestCommands) and posts
    their output (respondCommands); fails when a command exits non-zero."""

    name = "Task.Base.Linux.Commands"
    required_options = ("commands",)

    async def run(self, ctx: TaskContext) -> dict[str, Any]:
        response = await ctx.wait_response()
        results = response.get("tasks")
        if not isinstance(results, list):
            raise TaskFailedError("respondCommands body has no 'tasks' list")
        for item in results:
            if isinstance(item, dict) and item.get("error"):
                raise TaskFailedError(f"command {item.get('cmd')!r} failed: {item['error']}")
            if isinstance(item, dict) and item.get("exitCode") not in (0, None):
                raise TaskFailedError(f"command {item.get('cmd')!r} exited {item['exitCode']}")
        return {"tasks": results}


BUILTIN: tuple[type[BaseTask], ...] = (
    AgentRun,
    Wait,
    EvaluateCondition,
    GraphRun,
    Http,
    SkuGenerate,
    LinuxCommands,
)
