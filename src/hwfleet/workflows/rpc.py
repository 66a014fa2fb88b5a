"""Seed 003 on the bus: the ``task-graph-runner`` RPCs, ``scheduler`` and the ``task`` exchange.

Bodies and replies as DESIGN §11. A refused request is an error reply naming the
problem (``bad_params`` with the field for a bad definition, ``not_found``, ``busy``
for a node that already runs a graph, ``state`` for a wrong pause/resume); the server
keeps serving.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from hwfleet.bus.base import Bus, Delivery, RpcError, Subscription
from hwfleet.bus.rpc import KeyedHandler
from hwfleet.bus.topology import EXCHANGES, word
from hwfleet.store.graphs import GraphRepository
from hwfleet.workflows import bootprofile
from hwfleet.workflows.engine import EngineError

if TYPE_CHECKING:
    from hwfleet.workflows.service import GraphService

log = logging.getLogger(__name__)

RUNNER = "task-graph-runner"


def _text(params: dict[str, Any], key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key}: is required and must be a non-empty string")
    return value


def _id_from(method: str) -> str:
    return word(method.split(".", 1)[1]) if "." in method else ""


class RunnerRpc:
    """The eleven ``task-graph-runner`` methods."""

    def __init__(self, service: GraphService) -> None:
        self.s = service
        self.engine = service.engine

    def handlers(self) -> dict[str, Any]:
        # The eleven seed-003 methods, named once in the bus topology (DESIGN §4, §11).
        names = EXCHANGES["task-graph-runner"].rpc_methods
        return {name: _guarded(name, getattr(self, name)) for name in names}

    async def getTaskGraphLibrary(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"graphs": (await self.engine.library()).graphs()}

    async def getTaskLibrary(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"tasks": (await self.engine.library()).tasks()}

    async def getActiveTaskGraph(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"graph": await self.engine.active_for(_text(params, "target"))}

    async def getActiveTaskGraphs(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"graphs": await self.engine.list(active_only=True, limit=5000)}

    async def defineTaskGraph(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"injectableName": await self.engine.define_graph(params.get("definition"))}

    async def defineTask(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"injectableName": await self.engine.define_task(params.get("definition"))}

    async def runTaskGraph(self, params: dict[str, Any]) -> dict[str, Any]:
        target = params.get("target")
        if target is not None and not isinstance(target, str):
            raise ValueError("target: must be a node uuid")
        options = params.get("options") or {}
        graph_id = await self.engine.run(_text(params, "name"), target, options)
        return {"graphId": graph_id}

    async def cancelTaskGraph(self, params: dict[str, Any]) -> dict[str, Any]:
        return await self.engine.cancel(_text(params, "graphId"))

    async def pauseTaskGraph(self, params: dict[str, Any]) -> dict[str, Any]:
        return await self.engine.pause(_text(params, "graphId"))

    async def resumeTaskGraph(self, params: dict[str, Any]) -> dict[str, Any]:
        return await self.engine.resume(_text(params, "graphId"))

    async def getTaskGraphProperties(self, params: dict[str, Any]) -> dict[str, Any]:
        return await self.engine.properties(_text(params, "graphId"))


def _guarded(name: str, handler: Any, exchange: str = RUNNER) -> Any:
    async def call(params: dict[str, Any]) -> dict[str, Any]:
        try:
            result: dict[str, Any] = await handler(params)
        except EngineError as exc:
            raise RpcError(exchange, name, str(exc), exc.code) from None
        return result

    return call


class TaskChannel:
    """The ``task`` exchange: nodes and tasks asking about their graph."""

    def __init__(self, service: GraphService) -> None:
        self.s = service

    def handlers(self) -> dict[str, Any]:
        return {
            "activeTaskExists.*": KeyedHandler(self.active_task_exists),
            "requestProperties.*": KeyedHandler(self.request_properties),
            "requestProfile.*": KeyedHandler(self.request_profile),
            "requestCommands.*": KeyedHandler(self.request_commands),
            "respondCommands.*": KeyedHandler(self.respond_commands),
            "getBootProfile.*": KeyedHandler(self.get_boot_profile),
        }

    async def get_boot_profile(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        return await bootprofile.boot_profile(self.s.engine, _id_from(method))

    async def active_task_exists(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        graph = await self.s.engine.active_for(_id_from(method))
        return {"exists": graph is not None, "graphId": graph["graphId"] if graph else None}

    async def request_properties(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        graph = await self.s.engine.active_for(_id_from(method))
        if graph is None:
            return {}
        return await self.s.engine.properties(graph["graphId"])

    async def request_profile(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        node = _id_from(method)
        for row in await self._running(node):
            profile = row.spec.get("options", {}).get("profile")
            if profile:
                return {"profile": profile, "taskId": row.id}
        return {"profile": None}

    async def request_commands(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        return await commands_for(self.s, _id_from(method))

    async def respond_commands(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        return await accept_response(self.s, _id_from(method), params)

    async def _running(self, node: str) -> list[Any]:
        async with self.s.store.tx(readonly=True) as tx:
            return await GraphRepository(tx.conn).running_for_node(node)


async def commands_for(service: GraphService, node: str) -> dict[str, Any]:
    """RackHD's requestCommands: the node's running bootstrap task and its commands."""
    async with service.store.tx(readonly=True) as tx:
        rows = await GraphRepository(tx.conn).running_for_node(node)
    for row in rows:
        if row.spec.get("implementsTask") == "Task.Base.Linux.Commands" and row.response is None:
            commands = row.spec.get("options", {}).get("commands") or []
            tasks = [c if isinstance(c, dict) else {"cmd": str(c)} for c in commands]
            return {"identifier": row.id, "tasks": tasks}
    return {"identifier": None, "tasks": []}


async def accept_response(service: GraphService, node: str, body: dict[str, Any]) -> dict[str, Any]:
    """RackHD's respondCommands: the output of the commands, for the task that sent them."""
    identifier = _text(body, "identifier")
    if not isinstance(body.get("tasks"), list):
        raise ValueError("tasks: is required and must be a list of command results")
    async with service.store.tx(readonly=True) as tx:
        rows = await GraphRepository(tx.conn).running_for_node(node)
    if identifier not in {r.id for r in rows}:
        raise EngineError(f"node {node} runs no task {identifier}", "not_found")
    stored = await service.store.write(
        lambda tx: GraphRepository(tx.conn).set_response(identifier, {"tasks": body["tasks"]})
    )
    return {"accepted": bool(stored), "identifier": identifier}


async def serve_all(bus: Bus, service: GraphService) -> list[Subscription]:
    """Serve every seed-003 workflow face on ``bus``; returns the subscriptions to cancel."""
    runner = service.runner
    task_rpc = TaskChannel(service).handlers()
    subs = [
        await bus.serve(RUNNER, RunnerRpc(service).handlers()),
        await bus.serve("task", _keyed_guard(task_rpc)),
    ]

    async def nudge(delivery: Delivery) -> None:
        runner.wake()

    async def cancel(delivery: Delivery) -> None:
        runner.stop_local(delivery.routing_key.split(".", 1)[1])

    subs.append(await bus.subscribe("scheduler", "schedule", nudge))
    subs.append(await bus.subscribe("task", "run.*", nudge))
    subs.append(await bus.subscribe("task", "cancel.*", cancel))

    async def tell(ids: list[str]) -> None:
        for task_id in ids:
            try:
                await bus.publish("task", f"cancel.{word(task_id)}", {"taskId": task_id})
            except Exception:  # the heartbeat stops them within a second anyway
                log.exception("could not announce the cancel of %s", task_id)

    def on_cancel(ids: list[str]) -> Any:
        import asyncio

        return asyncio.ensure_future(tell(ids))

    service.engine.on_cancel = on_cancel
    return subs


def _keyed_guard(handlers: dict[str, KeyedHandler]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, handler in handlers.items():
        inner = handler.keyed

        async def guarded(
            method: str, params: dict[str, Any], inner: Any = inner, name: str = name
        ) -> dict[str, Any]:
            try:
                result: dict[str, Any] = await inner(method, params)
            except EngineError as exc:
                raise RpcError("task", name, str(exc), exc.code) from None
            return result

        out[name] = KeyedHandler(guarded)
    return out
