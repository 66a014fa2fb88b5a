"""The graph engine: define, run, cancel, pause and resume graphs; query them.

Every operation is a store transaction first; the runner (:mod:`.runner`) picks the
work up from the rows, on this replica or another. Cancel ends every unfinished task
row at once and stops local executions at once; other replicas stop theirs on their
next heartbeat (≤ 1 s) or at once through ``cancel.<taskId>`` on the ``task`` exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from hwfleet.store import Store
from hwfleet.store.events import EventRepository
from hwfleet.store.graphs import GraphRepository, GraphRow, NodeBusyError, TaskRow
from hwfleet.types import utcnow
from hwfleet.workflows import events
from hwfleet.workflows.basetasks import BaseTask
from hwfleet.workflows.definitions import (
    GRAPH_DONE,
    DefinitionError,
    check_required,
    task_options,
)
from hwfleet.workflows.events import Announcer
from hwfleet.workflows.library import Library, shipped
from hwfleet.workflows.nodecreds import NodeCredentials
from hwfleet.workflows.progress import advance, record_task_end
from hwfleet.workflows.registry import BaseTaskRegistry
from hwfleet.workflows.runner import TaskRunner, announce

__all__ = ["EngineError", "GraphEngine", "NodeBusyError"]


class EngineError(ValueError):
    """A request the engine refuses (unknown graph, wrong state); the message says why."""

    def __init__(self, msg: str, code: str = "bad_params") -> None:
        super().__init__(msg)
        self.code = code


def graph_object(graph: GraphRow, tasks: list[TaskRow]) -> dict[str, Any]:
    """The seed-003 graph object (DESIGN §11)."""
    return {
        "graphId": graph.id,
        "name": graph.name,
        "target": graph.node,
        "status": graph.status,
        "tasks": [
            {
                "label": t.label,
                "taskId": t.id,
                "taskName": t.spec.get("taskName"),
                "state": t.state,
                "attempts": t.attempts,
                **({"error": t.error} if t.error else {}),
            }
            for t in tasks
        ],
        "createdAt": graph.created_at.isoformat(),
        "finishedAt": graph.finished_at.isoformat() if graph.finished_at else None,
    }


class GraphEngine:
    def __init__(
        self,
        store: Store,
        publisher: Announcer,
        bases: BaseTaskRegistry,
        runner: TaskRunner,
        *,
        node_exists: Callable[[Any, str], Any] | None = None,
    ) -> None:
        self.store = store
        self._events = publisher
        self.bases = bases
        self.runner = runner
        self._node_exists = node_exists
        self._changed: dict[str, asyncio.Event] = {}
        self._shipped = (shipped("graphs"), shipped("tasks"))
        self._library: tuple[tuple[Any, ...], Library] | None = None
        runner.on_change = self.notify
        #: Called with each task id stopped by a cancel (the rpc layer tells other replicas).
        self.on_cancel: Callable[[list[str]], Any] = lambda ids: None
        #: Mints the per-node credential of the bootstrap pair (None: operator token only).
        self.credentials: NodeCredentials | None = None

    def notify(self, graph_id: str) -> None:
        event = self._changed.pop(graph_id, None)
        if event is not None:
            event.set()

    # -- definitions -----------------------------------------------------------
    async def library(self) -> Library:
        """The library as committed now (another replica may have defined something)."""
        async with self.store.tx(readonly=True) as tx:
            return await self._library_in(GraphRepository(tx.conn))

    async def _library_in(self, repo: GraphRepository) -> Library:
        graphs = await repo.definitions("graph")
        tasks = await repo.definitions("task")
        stamp = tuple((n, at) for n, _, at in graphs + tasks)
        if self._library is None or self._library[0] != stamp:
            library = Library(
                self.bases,
                [*self._shipped[0], *(b for _, b, _ in graphs)],
                [*self._shipped[1], *(b for _, b, _ in tasks)],
            )
            self._library = (stamp, library)
        return self._library[1]

    async def define_graph(self, body: Any) -> str:
        graph = (await self.library()).check_graph(body)
        await self._put("graph", graph.injectable_name, graph.body)
        return graph.injectable_name

    async def define_task(self, body: Any) -> str:
        task = (await self.library()).check_task(body)
        await self._put("task", task.injectable_name, task.body)
        return task.injectable_name

    async def _put(self, kind: str, name: str, body: dict[str, Any]) -> None:
        at = utcnow()
        await self.store.write(
            lambda tx: GraphRepository(tx.conn).put_definition(kind, name, body, at)
        )

    # -- running ---------------------------------------------------------------
    async def run(
        self,
        name: str,
        node: str | None,
        options: dict[str, Any] | None = None,
        *,
        parent_task: str | None = None,
    ) -> str:
        """Start graph ``name`` on ``node``; returns its id. Refuses a busy node."""
        options = options or {}
        if not isinstance(options, dict):
            raise EngineError("options must be a JSON object")
        graph_id = str(uuidlib.uuid4())
        at = utcnow()
        specs: list[tuple[str, Any]] = []

        # One transaction: the definitions as committed, the node, the rows, the event.
        async def create(tx: Any) -> list[Any]:
            repo = GraphRepository(tx.conn)
            library = await self._library_in(repo)
            graph = library.graph(name)
            if graph is None:
                raise EngineError(f"unknown graph {name!r}", "not_found")
            if node is not None and self._node_exists and not await self._node_exists(tx, node):
                raise EngineError(f"unknown node {node!r}", "not_found")
            rows = []
            for i, entry in enumerate(graph.tasks):
                opts = task_options(graph, entry, options)
                check_required(entry, opts, self.bases.get, f"tasks[{i}]", run=True)
                base = self.bases.get(entry.task.implements)
                assert base is not None  # parse_graph checked it
                rows.append(self._task_row(graph_id, i, entry, opts, base))
            graph_row = {
                "id": graph_id,
                "name": name,
                "node": node,
                "status": "running",
                "options": options,
                "context": {},
                "parent_task": parent_task,
                "created_at": at,
            }
            await repo.create_graph(graph_row, rows, exclusive=parent_task is None)
            specs[:] = [(r["id"], r["spec"]) for r in rows]
            key, body, dev = events.graph_started(graph_id, name, node)
            return [await EventRepository(tx.conn).add(key, body, device_uuid=dev, at=at)]

        try:
            records = await self.store.write(create)
        except NodeBusyError as exc:
            raise EngineError(str(exc), "busy") from None
        except sa.exc.IntegrityError:  # two runs raced past the check: the index decided
            raise EngineError(f"node {node} already runs a graph", "busy") from None
        self.runner.shapes.prime(graph_id, node, specs)
        await announce(self._events, records)
        self.runner.wake()
        return graph_id

    @staticmethod
    def _task_row(
        graph_id: str, i: int, entry: Any, opts: dict[str, Any], base: type[BaseTask]
    ) -> dict[str, Any]:
        # Destructive tasks are never re-run behind the operator's back (DESIGN §11).
        default_retries = 0 if base.destructive(opts) else 1
        spec = {
            "taskName": entry.task.injectable_name,
            "implementsTask": entry.task.implements,
            "options": opts,
            "properties": entry.task.properties,
            "waitOn": entry.wait_on,
            "ignoreFailure": entry.ignore_failure,
            "retries": default_retries if entry.retries is None else entry.retries,
            "timeout": entry.timeout,
        }
        return {
            "id": str(uuidlib.uuid4()),
            "graph_id": graph_id,
            "position": i,
            "label": entry.label,
            "spec": spec,
            "state": "pending",
            "ready": not entry.wait_on,
            "attempts": 0,
        }

    async def cancel(self, graph_id: str, reason: str = "graph cancelled") -> dict[str, Any]:
        at = utcnow()

        async def cancel(tx: Any) -> tuple[GraphRow | None, list[Any], list[str]]:
            repo, ev = GraphRepository(tx.conn), EventRepository(tx.conn)
            graph = await repo.get_graph(graph_id)
            if graph is None or graph.status in GRAPH_DONE:
                return graph, [], []
            records = []
            stopped = await repo.cancel_unfinished(graph_id, reason, at, task_ids=None)
            for row in stopped:
                records += await record_task_end(repo, ev, row, graph.node, at)
            await repo.finish_graph(graph_id, "cancelled", at)
            key, body, dev = events.graph_finished(graph_id, graph.name, graph.node, "cancelled")
            records.append(await ev.add(key, body, device_uuid=dev, at=at))
            return graph, records, [r.id for r in stopped if r.lease_owner]

        graph, records, running = await self.store.write(cancel)
        if graph is None:
            raise EngineError(f"unknown graph {graph_id!r}", "not_found")
        for task_id in running:
            self.runner.stop_local(task_id)
        if running:
            self.on_cancel(running)
        await announce(self._events, records)
        self.notify(graph_id)
        return await self._status(graph_id)

    async def pause(self, graph_id: str) -> dict[str, Any]:
        return await self._switch(graph_id, "paused", ("running",))

    async def resume(self, graph_id: str) -> dict[str, Any]:
        result = await self._switch(graph_id, "running", ("paused",))
        self.runner.wake()
        return result

    async def _switch(self, graph_id: str, to: str, only_from: tuple[str, ...]) -> dict[str, Any]:
        changed = await self.store.write(
            lambda tx: GraphRepository(tx.conn).set_status(graph_id, to, only_from=only_from)
        )
        status = await self._status(graph_id)
        if changed:
            await self._events.progress(*events.graph_progress(graph_id, {"status": to}))
        if not changed and status["status"] != to:
            raise EngineError(
                f"graph {graph_id} is {status['status']}, not {only_from[0]}", "state"
            )
        return status

    async def _status(self, graph_id: str) -> dict[str, Any]:
        async with self.store.tx(readonly=True) as tx:
            graph = await GraphRepository(tx.conn).get_graph(graph_id)
        if graph is None:
            raise EngineError(f"unknown graph {graph_id!r}", "not_found")
        return {"graphId": graph_id, "status": graph.status}

    async def node_lost(self, node: str, reason: str) -> None:
        """Fail this replica's running tasks on ``node`` with the reason (the node went away)."""
        for task_id in self.runner.running_on(node):
            self.runner.stop_local(task_id, f"node {node} disappeared: {reason}")

    # -- queries ---------------------------------------------------------------
    async def get(self, graph_id: str) -> dict[str, Any] | None:
        async with self.store.tx(readonly=True) as tx:
            repo = GraphRepository(tx.conn)
            graph = await repo.get_graph(graph_id)
            if graph is None:
                return None
            return graph_object(graph, await repo.tasks_of([graph_id]))

    async def list(
        self, *, active_only: bool = False, node: str | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        async with self.store.tx(readonly=True) as tx:
            repo = GraphRepository(tx.conn)
            graphs = await repo.list_graphs(active_only=active_only, node=node, limit=limit)
            tasks = await repo.tasks_of([g.id for g in graphs])
        by_graph: dict[str, list[TaskRow]] = {}
        for t in tasks:
            by_graph.setdefault(t.graph_id, []).append(t)
        return [graph_object(g, by_graph.get(g.id, [])) for g in graphs]

    async def active_for(self, node: str) -> dict[str, Any] | None:
        async with self.store.tx(readonly=True) as tx:
            repo = GraphRepository(tx.conn)
            graph = await repo.active_for_node(node)
            if graph is None:
                return None
            return graph_object(graph, await repo.tasks_of([graph.id]))

    async def properties(self, graph_id: str) -> dict[str, Any]:
        async with self.store.tx(readonly=True) as tx:
            graph = await GraphRepository(tx.conn).get_graph(graph_id)
        if graph is None:
            raise EngineError(f"unknown graph {graph_id!r}", "not_found")
        return dict(graph.context)

    async def wait(self, graph_id: str, timeout: float) -> dict[str, Any] | None:
        """The graph once it has ended, or as it stands after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._changed.setdefault(graph_id, asyncio.Event())
            graph = await self.get(graph_id)
            left = deadline - loop.time()
            if graph is None or graph["status"] in GRAPH_DONE or left <= 0:
                return graph
            # Woken by a local change; the bounded wait catches other replicas' changes.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, 0.5)):
                    await event.wait()

    async def advance_now(self, graph_id: str) -> None:
        """Re-plan a graph (after a task row changed outside the runner)."""
        at = utcnow()

        async def work(tx: Any) -> tuple[list[Any], bool]:
            return await advance(GraphRepository(tx.conn), EventRepository(tx.conn), graph_id, at)

        records, _ = await self.store.write(work)
        await announce(self._events, records)


def definition_error(exc: DefinitionError) -> dict[str, Any]:
    return {"msg": str(exc), "field": exc.field}
