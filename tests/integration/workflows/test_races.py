"""Hundreds of define/run/cancel/pause/resume calls racing leave consistent rows (property test).

Each example drives a real engine (SQLite store, memory bus, two runners as two replicas
would) with a random interleaving of operations, then checks the invariants the store
must keep whatever the order: at most one active graph per node; a finished graph has no
unfinished task; an active graph's tasks are never all finished once its runners settle;
every finished task has exactly one task.finished event.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwfleet.bus import open_bus
from hwfleet.controller.events import EventPublisher, utcnow
from hwfleet.store import open_store
from hwfleet.store.graphs import GraphRepository
from hwfleet.workflows.basetasks import TaskFailedError
from hwfleet.workflows.engine import EngineError
from hwfleet.workflows.runner import RunnerSettings
from hwfleet.workflows.service import GraphService

NODES = [f"race-node-{i}" for i in range(4)]
GRAPH = {
    "injectableName": "Graph.Race",
    "tasks": [
        {"label": "a", "taskName": "Task.Hwfleet.Wait"},
        {"label": "b", "taskName": "Task.Hwfleet.Wait", "waitOn": {"a": "finished"}},
        {"label": "c", "taskName": "Task.Hwfleet.Evaluate.Condition", "waitOn": {"b": "succeeded"}},
    ],
    "options": {"defaults": {"seconds": 0.01}},
}


class NoAgent:
    async def call(self, node: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
        raise TaskFailedError("no agents in this test")

    run_long = call


OPS = st.lists(
    st.tuples(
        st.sampled_from(["define", "run", "cancel", "pause", "resume"]),
        st.integers(0, len(NODES) - 1),
    ),
    min_size=20,
    max_size=60,
)


async def scenario(ops: list[tuple[str, int]], data: Path) -> None:
    store = await open_store(f"sqlite+aiosqlite:///{data / 'race.db'}")
    bus = open_bus("memory://")
    await bus.start()
    publisher = EventPublisher(store, bus)
    services = [
        GraphService(
            store, publisher, NoAgent(), RunnerSettings(owner=f"r{i}", heartbeat=0.05, poll=0.05)
        )
        for i in range(2)
    ]
    try:
        async with store.tx() as tx:
            for i, node in enumerate(NODES):
                await tx.devices.upsert(
                    node, serial=i, name=node, model_id="X", version="1", macs=[],
                    ipaddr="127.1.2.3", st_id=0, transport="stream", online=False, at=utcnow(),
                )  # fmt: skip
        for s in services:
            await s.start()
        engine = services[0].engine
        await engine.define_graph(GRAPH)
        graphs: list[str] = []

        async def op(kind: str, n: int, i: int) -> None:
            eng = services[i % 2].engine
            try:
                if kind == "define":
                    await eng.define_graph(GRAPH)
                elif kind == "run":
                    graphs.append(await eng.run("Graph.Race", NODES[n]))
                elif graphs:
                    target = graphs[n % len(graphs)]
                    await getattr(eng, kind)(target)
            except EngineError as exc:
                assert exc.code in ("busy", "state"), exc

        await asyncio.gather(*(op(kind, n, i) for i, (kind, n) in enumerate(ops)))
        for graph_id in graphs:  # settle: resume what is paused, then let everything end
            with contextlib.suppress(EngineError):
                await engine.resume(graph_id)
        for graph_id in graphs:
            done = await engine.wait(graph_id, 20)
            assert done is not None and done["status"] in ("succeeded", "failed", "cancelled"), done
        async with store.tx(readonly=True) as tx:
            repo = GraphRepository(tx.conn)
            rows = await repo.list_graphs(limit=5000)
            tasks = await repo.tasks_of([g.id for g in rows])
            keys = [e.routing_key for e in await tx.events.list(limit=5000)]
        for g in rows:
            mine = [t for t in tasks if t.graph_id == g.id]
            assert all(t.state not in ("pending", "running") for t in mine), (g, mine)
            if g.status == "succeeded":
                assert [t.state for t in mine] == ["succeeded"] * 3
            assert keys.count(f"graph.finished.{g.id}") == 1
        for t in tasks:
            assert keys.count(f"task.finished.{t.id}") == 1, t
            assert t.attempts <= 2
        by_node: dict[str | None, list[Any]] = {}
        for g in rows:
            by_node.setdefault(g.node, []).append(g)
        for node_graphs in by_node.values():  # runs of one node never overlapped
            spans = sorted((g.created_at, g.finished_at) for g in node_graphs)
            for (_, end), (start, _) in itertools.pairwise(spans):
                assert end is not None and end <= start
    finally:
        for s in services:
            await s.close()
        await bus.close()
        await store.close()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_racing_operations_leave_consistent_rows(ops: list[tuple[str, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(ops, Path(tmp)))
