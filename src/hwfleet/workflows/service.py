"""The workflow service: registry, runner, engine, SKUs and the bus faces, built together.

The controller's composition root makes one :class:`GraphService` and starts it; the
REST routers and CLI reach the engine through it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from hwfleet.store.events import EventRepository
from hwfleet.store.graphs import GraphRepository, TaskRow
from hwfleet.types import utcnow
from hwfleet.workflows import events
from hwfleet.workflows.basetasks import AgentPort, TaskContext
from hwfleet.workflows.engine import EngineError, GraphEngine
from hwfleet.workflows.events import Announcer
from hwfleet.workflows.nodecreds import NodeCredentials
from hwfleet.workflows.ports import http_request, poll_response
from hwfleet.workflows.registry import BaseTaskRegistry
from hwfleet.workflows.runner import RunnerSettings, TaskRunner, announce
from hwfleet.workflows.skus import Sku, best, parse_sku

if TYPE_CHECKING:
    from hwfleet.bus.base import Bus, Subscription
    from hwfleet.store import Store

log = logging.getLogger(__name__)


class GraphService:
    def __init__(
        self,
        store: Store,
        publisher: Announcer,
        agent: AgentPort,
        settings: RunnerSettings,
        *,
        bases: BaseTaskRegistry | None = None,
        online: Callable[[], Awaitable[list[str]]] | None = None,
        held_elsewhere: Callable[[str], Awaitable[bool]] | None = None,
        credentials: NodeCredentials | None = None,
    ) -> None:
        """``online``: every device online now (for ``--all``); ``held_elsewhere(node)``:
        another replica holds the node's connection (its agent tasks are left to that one);
        ``credentials``: per-node credentials for the bootstrap pair over HTTPS (none: only
        the operator token reaches it)."""
        self.credentials = credentials
        self._online = online
        self._held_elsewhere = held_elsewhere
        self.store = store
        self._events = publisher
        self._agent = agent
        self.bases = bases or BaseTaskRegistry()
        self.runner = TaskRunner(
            store, publisher, self.bases, settings, self._context, self._can_run
        )
        self.engine = GraphEngine(
            store, publisher, self.bases, self.runner, node_exists=self._node_exists
        )
        self.engine.credentials = credentials
        self._subscriptions: list[Subscription] = []

    async def start(self, bus: Bus | None = None) -> None:
        (await self.engine.library()).check_shipped()
        await self.runner.start()
        if bus is not None:
            from hwfleet.workflows.rpc import serve_all

            self._subscriptions = await serve_all(bus, self)

    async def close(self) -> None:
        for sub in self._subscriptions:
            try:
                await sub.cancel()
            except Exception:
                log.exception("could not cancel a workflow subscription")
        self._subscriptions = []
        await self.runner.close()

    async def _can_run(self, row: TaskRow, node: str | None) -> bool:
        if node is None or self._held_elsewhere is None:
            return True
        if row.spec.get("implementsTask") != "Task.Base.Agent.Run":
            return True
        return not await self._held_elsewhere(node)

    @staticmethod
    async def _node_exists(tx: Any, node: str) -> bool:
        return await tx.devices.get(node) is not None

    def _context(self, row: TaskRow, node: str | None) -> TaskContext:
        async def set_properties(values: dict[str, Any]) -> None:
            await self.store.write(
                lambda tx: GraphRepository(tx.conn).merge_context(row.graph_id, values)
            )

        async def wait_response() -> dict[str, Any]:
            return await poll_response(self.store, row.id)

        return TaskContext(
            task_id=row.id,
            graph_id=row.graph_id,
            label=row.label,
            node=node,
            options=dict(row.spec.get("options") or {}),
            attempt=row.attempts,
            agent=self._agent,
            graphs=_Children(self.engine),
            set_properties=set_properties,
            wait_response=wait_response,
            assign_sku=self.assign_sku,
            http=http_request,
        )

    async def targets(self, nodes: list[str], *, all_nodes: bool, sku: str | None) -> list[str]:
        """The nodes a run names: explicit uuids, every online device, or a SKU's nodes."""
        chosen = [n for n in nodes if n]
        if sum((bool(chosen), all_nodes, sku is not None)) != 1:
            raise EngineError("give exactly one of: nodes, all, sku (explicit targets only)")
        if chosen:
            return chosen
        if sku is not None:
            async with self.store.tx(readonly=True) as tx:
                return await GraphRepository(tx.conn).nodes_with_sku(sku)
        if self._online is None:
            raise EngineError("this engine cannot list online devices; name the nodes")
        return sorted(await self._online())

    async def run_many(
        self, name: str, nodes: list[str], options: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """One graph per node, all in one transaction; a refused node is reported, the rest
        still run (a race with another replica falls back to one run per node)."""
        import sqlalchemy as sa

        from hwfleet.workflows.bulk import start_many

        try:
            return await start_many(self.engine, name, nodes, options)
        except sa.exc.IntegrityError:
            results: list[dict[str, Any]] = []
            for node in nodes:
                try:
                    graph_id = await self.engine.run(name, node, options)
                    results.append({"node": node, "graphId": graph_id})
                except EngineError as exc:
                    if exc.code == "not_found" and "graph" in str(exc):
                        raise
                    results.append({"node": node, "error": str(exc), "code": exc.code})
            return results

    # -- SKUs ------------------------------------------------------------------
    async def skus(self) -> list[Sku]:
        async with self.store.tx(readonly=True) as tx:
            rows = await GraphRepository(tx.conn).definitions("sku")
        return [parse_sku(body, at) for _, body, at in rows]

    async def define_sku(self, body: Any) -> str:
        sku = parse_sku(body)
        at = utcnow()
        await self.store.write(
            lambda tx: GraphRepository(tx.conn).put_definition("sku", sku.name, sku.body, at)
        )
        await self.reevaluate_all()
        return sku.name

    async def assign_sku(self, node: str) -> str | None:
        """Match ``node``'s catalog; record, announce and run the SKU's discovery graph."""
        skus = await self.skus()
        async with self.store.tx(readonly=True) as tx:
            catalog = await tx.devices.get_inventory(node)
        chosen = best(skus, catalog or {})
        if chosen is None:
            return None
        at = utcnow()

        async def assign(tx: Any) -> list[Any]:
            if not await GraphRepository(tx.conn).assign_sku(node, chosen.name, at):
                return []
            key, body, dev = events.sku_assigned(node, chosen.name)
            return [await EventRepository(tx.conn).add(key, body, device_uuid=dev, at=at)]

        records = await self.store.write(assign)
        await announce(self._events, records)
        graph = chosen.body.get("discoveryGraphName")
        if records and graph:
            await self._run_discovery(node, graph, chosen.body.get("discoveryGraphOptions") or {})
        return chosen.name

    async def _run_discovery(self, node: str, graph: str, options: dict[str, Any]) -> None:
        try:
            await self.engine.run(graph, node, options)
        except EngineError as exc:
            # The node may be running the graph that assigned the SKU: say so, do not fail it.
            log.warning("SKU discovery graph %s not started on %s: %s", graph, node, exc)

    async def reevaluate_all(self) -> int:
        """Every node with a catalog gets its SKU again (a SKU changed)."""
        from hwfleet.store.models import inventories

        async with self.store.tx(readonly=True) as tx:
            rows = await tx.conn.execute(
                inventories.select().with_only_columns(inventories.c.device_uuid)
            )
            nodes = [r[0] for r in rows]
        for node in nodes:
            await self.assign_sku(node)
        return len(nodes)

    async def nodes_of(self, sku: str) -> list[str]:
        async with self.store.tx(readonly=True) as tx:
            return await GraphRepository(tx.conn).nodes_with_sku(sku)

    async def sku_of(self, node: str) -> str | None:
        async with self.store.tx(readonly=True) as tx:
            return await GraphRepository(tx.conn).sku_of(node)


class _Children:
    """Sub-graphs for ``Task.Base.Graph.Run``: they share the parent's node, not its lock."""

    def __init__(self, engine: GraphEngine) -> None:
        self._engine = engine

    async def run_child(
        self, parent_task: str, name: str, node: str | None, options: dict[str, Any]
    ) -> str:
        try:
            return await self._engine.run(name, node, options, parent_task=parent_task)
        except EngineError as exc:
            from hwfleet.workflows.basetasks import TaskFailedError

            raise TaskFailedError(str(exc)) from None

    async def wait_graph(self, graph_id: str) -> str:
        while True:
            graph = await self._engine.wait(graph_id, 3600.0)
            if graph is None:
                return "failed"
            if graph["status"] in ("succeeded", "failed", "cancelled"):
                return str(graph["status"])
