"""Repository of the task-graph tables: every engine state change is one statement here.

Made per transaction: ``GraphRepository(tx.conn)``. Claims are atomic conditional
UPDATEs (on PostgreSQL over ``SELECT … FOR UPDATE SKIP LOCKED``; SQLite serialises
writers with ``BEGIN IMMEDIATE``), so two runners never hold the same task.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hwfleet.store.base import AnyRow, Repository, check_limit
from hwfleet.store.graph_tables import graph_definitions, graph_tasks, graphs, node_skus

_FINISHED = ("succeeded", "failed", "cancelled", "timeout")
_GRAPH_DONE = ("succeeded", "failed", "cancelled")


class NodeBusyError(ValueError):
    """The node already has an active graph."""


@dataclass(frozen=True, slots=True)
class GraphRow:
    id: str
    name: str
    node: str | None
    status: str
    options: dict[str, Any]
    context: dict[str, Any]
    parent_task: str | None
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class TaskRow:
    id: str
    graph_id: str
    position: int
    label: str
    spec: dict[str, Any]
    state: str
    ready: bool
    attempts: int
    lease_owner: str | None
    error: str | None
    result: dict[str, Any] | None
    response: dict[str, Any] | None
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class TaskEnd:
    """One task's end as a runner records it (:meth:`GraphRepository.finish_tasks`)."""

    task_id: str
    state: str
    error: str | None
    result: dict[str, Any] | None
    at: datetime


def _still_held(owner: str, task_ids: list[str]) -> tuple[sa.ColumnElement[bool], ...]:
    """The guard of every update a runner makes to its own tasks: a task cancelled, ended or
    taken over by another runner meanwhile is left alone."""
    return (
        graph_tasks.c.id.in_(task_ids),
        graph_tasks.c.lease_owner == owner,
        graph_tasks.c.state == "running",
    )


def _graph(row: AnyRow) -> GraphRow:
    m = row._mapping
    return GraphRow(**{k: m[k] for k in GraphRow.__dataclass_fields__})


def _task(row: AnyRow) -> TaskRow:
    m = row._mapping
    return TaskRow(**{k: m[k] for k in TaskRow.__dataclass_fields__})


_TASK_COLS = [graph_tasks.c[name] for name in TaskRow.__dataclass_fields__]


class GraphRepository(Repository):
    """Definitions, graphs, task rows and node SKUs."""

    __slots__ = ()

    # -- definitions -----------------------------------------------------------
    async def put_definition(
        self, kind: str, name: str, body: dict[str, Any], at: datetime
    ) -> None:
        stmt = self._insert(graph_definitions).values(
            kind=kind, name=name, body=body, updated_at=at
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["name", "kind"], set_={"body": body, "updated_at": at}
        )
        await self._conn.execute(stmt)

    async def definitions(self, kind: str) -> builtins.list[tuple[str, dict[str, Any], datetime]]:
        stmt = (
            sa.select(graph_definitions)
            .where(graph_definitions.c.kind == kind)
            .order_by(graph_definitions.c.name)
        )
        return [(r.name, r.body, r.updated_at) for r in await self._rows(stmt)]

    async def delete_definition(self, kind: str, name: str) -> bool:
        stmt = sa.delete(graph_definitions).where(
            graph_definitions.c.kind == kind, graph_definitions.c.name == name
        )
        result = await self._conn.execute(stmt)
        return bool(result.rowcount)

    # -- graphs ----------------------------------------------------------------
    async def create_graph(
        self,
        graph: dict[str, Any],
        tasks: builtins.list[dict[str, Any]],
        *,
        exclusive: bool,
    ) -> None:
        """Insert a graph and its tasks; ``exclusive`` claims the node (one active graph)."""
        node = graph.get("node")
        if exclusive and node:
            busy = await self._row(sa.select(graphs.c.id).where(graphs.c.active_node == node))
            if busy is not None:
                raise NodeBusyError(f"node {node} already runs graph {busy.id}")
        values = {**graph, "active_node": node if exclusive else None}
        # A run racing past the check above fails on the unique index (IntegrityError).
        await self._conn.execute(sa.insert(graphs).values(values))
        if tasks:
            await self._conn.execute(sa.insert(graph_tasks), tasks)

    async def create_many(
        self, graph_rows: builtins.list[dict[str, Any]], task_rows: builtins.list[dict[str, Any]]
    ) -> None:
        """Insert top-level graphs (each claiming its node) and their tasks, two statements."""
        values = [{**g, "active_node": g.get("node")} for g in graph_rows]
        if values:
            await self._conn.execute(sa.insert(graphs), values)
        if task_rows:
            await self._conn.execute(sa.insert(graph_tasks), task_rows)

    async def busy_nodes(self, nodes: builtins.list[str]) -> builtins.set[str]:
        if not nodes:
            return set()
        stmt = sa.select(graphs.c.active_node).where(graphs.c.active_node.in_(set(nodes)))
        return {str(r.active_node) for r in await self._rows(stmt)}

    async def get_graph(self, graph_id: str) -> GraphRow | None:
        row = await self._row(sa.select(graphs).where(graphs.c.id == graph_id))
        return None if row is None else _graph(row)

    async def nodes_of(self, graph_ids: builtins.list[str]) -> dict[str, str | None]:
        if not graph_ids:
            return {}
        stmt = sa.select(graphs.c.id, graphs.c.node).where(graphs.c.id.in_(set(graph_ids)))
        return {r.id: r.node for r in await self._rows(stmt)}

    async def active_for_node(self, node: str) -> GraphRow | None:
        row = await self._row(sa.select(graphs).where(graphs.c.active_node == node))
        return None if row is None else _graph(row)

    async def list_graphs(
        self, *, active_only: bool = False, node: str | None = None, limit: int = 200
    ) -> builtins.list[GraphRow]:
        stmt = sa.select(graphs).order_by(graphs.c.created_at.desc(), graphs.c.id)
        if active_only:
            stmt = stmt.where(graphs.c.status.not_in(_GRAPH_DONE))
        if node is not None:
            stmt = stmt.where(graphs.c.node == node)
        return [_graph(r) for r in await self._rows(stmt.limit(check_limit(limit)))]

    async def tasks_of(self, graph_ids: builtins.list[str]) -> builtins.list[TaskRow]:
        if not graph_ids:
            return []
        stmt = (
            sa.select(*_TASK_COLS)
            .where(graph_tasks.c.graph_id.in_(graph_ids))
            .order_by(graph_tasks.c.graph_id, graph_tasks.c.position)
        )
        return [_task(r) for r in await self._rows(stmt)]

    async def get_task(self, task_id: str) -> TaskRow | None:
        row = await self._row(sa.select(*_TASK_COLS).where(graph_tasks.c.id == task_id))
        return None if row is None else _task(row)

    async def set_status(self, graph_id: str, status: str, *, only_from: tuple[str, ...]) -> bool:
        stmt = (
            sa.update(graphs)
            .where(graphs.c.id == graph_id, graphs.c.status.in_(only_from))
            .values(status=status)
        )
        return bool((await self._conn.execute(stmt)).rowcount)

    async def finish_graph(self, graph_id: str, status: str, at: datetime) -> bool:
        stmt = (
            sa.update(graphs)
            .where(graphs.c.id == graph_id, graphs.c.status.not_in(_GRAPH_DONE))
            .values(status=status, finished_at=at, active_node=None)
        )
        return bool((await self._conn.execute(stmt)).rowcount)

    async def merge_context(self, graph_id: str, values: dict[str, Any]) -> None:
        row = await self._row(sa.select(graphs.c.context).where(graphs.c.id == graph_id))
        if row is not None:
            stmt = sa.update(graphs).where(graphs.c.id == graph_id)
            await self._conn.execute(stmt.values(context={**row.context, **values}))

    # -- tasks -----------------------------------------------------------------
    def _claimable(self, now: datetime, *, joined: bool) -> sa.ColumnElement[bool]:
        pending = sa.and_(graph_tasks.c.state == "pending", graph_tasks.c.ready.is_(True))
        if joined:
            pending = sa.and_(pending, graphs.c.status == "running")
        expired = sa.and_(graph_tasks.c.state == "running", graph_tasks.c.lease_until < now)
        return sa.or_(pending, expired)

    async def claim(
        self,
        owner: str,
        now: datetime,
        until: datetime,
        limit: int,
        *,
        skip: builtins.list[str] | None = None,
    ) -> builtins.list[TaskRow]:
        """Take up to ``limit`` ready tasks (or tasks whose lease expired) for ``owner``."""
        pick = (
            sa.select(graph_tasks.c.id)
            .join(graphs, graphs.c.id == graph_tasks.c.graph_id)
            .where(self._claimable(now, joined=True))
            .order_by(graph_tasks.c.lease_until.is_(None), graph_tasks.c.id)
            .limit(limit)
        )
        if skip:
            pick = pick.where(graph_tasks.c.id.not_in(skip))
        if self._pg:
            pick = pick.with_for_update(skip_locked=True, of=graph_tasks)
        stmt = (
            sa.update(graph_tasks)
            .where(graph_tasks.c.id.in_(pick.scalar_subquery()), self._claimable(now, joined=False))
            .values(
                state="running",
                lease_owner=owner,
                lease_until=until,
                attempts=graph_tasks.c.attempts + 1,
                started_at=sa.func.coalesce(graph_tasks.c.started_at, now),
            )
            .returning(*_TASK_COLS)
        )
        return [_task(r) for r in await self._rows(stmt)]

    async def heartbeat(
        self, owner: str, task_ids: builtins.list[str], until: datetime
    ) -> builtins.set[str]:
        """Extend ``owner``'s leases; returns the ids it still holds (others were taken away)."""
        if not task_ids:
            return set()
        stmt = (
            sa.update(graph_tasks)
            .where(*_still_held(owner, task_ids))
            .values(lease_until=until)
            .returning(graph_tasks.c.id)
        )
        return {r.id for r in await self._rows(stmt)}

    async def finish_tasks(self, owner: str, ends: builtins.list[TaskEnd]) -> builtins.set[str]:
        """End many of ``owner``'s running tasks; returns the ids that were still its own.

        One conditional UPDATE per distinct (state, error) — a task cancelled or taken
        away meanwhile is not overwritten — then one executemany for each row's own
        result and end time. The rows are not read back: the runner holds them.
        """
        groups: dict[tuple[str, str | None], builtins.list[str]] = {}
        for end in ends:
            groups.setdefault((end.state, end.error), []).append(end.task_id)
        mine: builtins.set[str] = set()
        for (state, error), ids in groups.items():
            stmt = (
                sa.update(graph_tasks)
                .where(*_still_held(owner, ids))
                .values(state=state, error=error, lease_until=None)
                .returning(graph_tasks.c.id)
            )
            mine.update(r.id for r in await self._rows(stmt))
        rows = [{"tid": e.task_id, "res": e.result, "fin": e.at} for e in ends if e.task_id in mine]
        if rows:
            each = (
                sa.update(graph_tasks)
                .where(graph_tasks.c.id == sa.bindparam("tid"))
                .values(result=sa.bindparam("res"), finished_at=sa.bindparam("fin"))
            )
            await self._conn.execute(each, rows)
        return mine

    async def progress_of(
        self, graph_ids: builtins.list[str]
    ) -> builtins.list[tuple[str, str, str, str, bool, str | None]]:
        """``(id, graph_id, label, state, ready, error)`` of every task of these graphs: what
        changes as a graph runs, without the definitions (JSON) the caller already knows."""
        if not graph_ids:
            return []
        c = graph_tasks.c
        stmt = (
            sa.select(c.id, c.graph_id, c.label, c.state, c.ready, c.error)
            .where(c.graph_id.in_(graph_ids))
            .order_by(c.graph_id, c.position)
        )
        return [(r[0], r[1], r[2], r[3], bool(r[4]), r[5]) for r in await self._rows(stmt)]

    async def specs_of(self, graph_ids: builtins.list[str]) -> builtins.list[tuple[str, str, Any]]:
        """``(task id, graph id, spec)`` of every task of these graphs."""
        if not graph_ids:
            return []
        c = graph_tasks.c
        stmt = sa.select(c.id, c.graph_id, c.spec).where(c.graph_id.in_(graph_ids))
        return [(r[0], r[1], r[2]) for r in await self._rows(stmt)]

    async def heads_of(
        self, graph_ids: builtins.list[str]
    ) -> dict[str, tuple[str, str | None, str]]:
        """``{graph id: (name, node, status)}``: a graph without its JSON columns."""
        if not graph_ids:
            return {}
        g = graphs.c
        stmt = sa.select(g.id, g.name, g.node, g.status).where(g.id.in_(set(graph_ids)))
        return {r[0]: (r[1], r[2], r[3]) for r in await self._rows(stmt)}

    async def finish_graphs(self, statuses: dict[str, str], at: datetime) -> builtins.set[str]:
        """End many graphs (``{id: status}``), one UPDATE per status; the ids that were open."""
        by_status: dict[str, builtins.list[str]] = {}
        for graph_id, status in statuses.items():
            by_status.setdefault(status, []).append(graph_id)
        done: builtins.set[str] = set()
        for status, ids in by_status.items():
            stmt = (
                sa.update(graphs)
                .where(graphs.c.id.in_(ids), graphs.c.status.not_in(_GRAPH_DONE))
                .values(status=status, finished_at=at, active_node=None)
                .returning(graphs.c.id)
            )
            done.update(r.id for r in await self._rows(stmt))
        return done

    async def requeue(self, task_id: str, owner: str, error: str) -> bool:
        """Back to ``pending`` for another attempt (a retry)."""
        stmt = (
            sa.update(graph_tasks)
            .where(*_still_held(owner, [task_id]))
            .values(state="pending", ready=True, lease_owner=None, lease_until=None, error=error)
        )
        return bool((await self._conn.execute(stmt)).rowcount)

    async def release(self, task_id: str, owner: str) -> bool:
        """Give a claimed task back untouched (this runner cannot reach its node)."""
        stmt = (
            sa.update(graph_tasks)
            .where(*_still_held(owner, [task_id]))
            .values(
                state="pending",
                lease_owner=None,
                lease_until=None,
                attempts=graph_tasks.c.attempts - 1,
            )
        )
        return bool((await self._conn.execute(stmt)).rowcount)

    async def mark_ready(self, task_ids: builtins.list[str]) -> None:
        if task_ids:
            stmt = sa.update(graph_tasks).where(graph_tasks.c.id.in_(task_ids)).values(ready=True)
            await self._conn.execute(stmt)

    async def cancel_unfinished(
        self, graph_id: str, reason: str, at: datetime, *, task_ids: builtins.list[str] | None
    ) -> builtins.list[TaskRow]:
        stmt = sa.update(graph_tasks).where(
            graph_tasks.c.graph_id == graph_id, graph_tasks.c.state.not_in(_FINISHED)
        )
        if task_ids is not None:
            stmt = stmt.where(graph_tasks.c.id.in_(task_ids))
        stmt = stmt.values(
            state="cancelled", error=reason, finished_at=at, lease_until=None
        ).returning(*_TASK_COLS)
        return [_task(r) for r in await self._rows(stmt)]

    async def running_for_node(self, node: str) -> builtins.list[TaskRow]:
        stmt = (
            sa.select(*_TASK_COLS)
            .join(graphs, graphs.c.id == graph_tasks.c.graph_id)
            .where(graphs.c.node == node, graph_tasks.c.state == "running")
            .order_by(graph_tasks.c.started_at)
        )
        return [_task(r) for r in await self._rows(stmt)]

    async def set_response(self, task_id: str, response: dict[str, Any]) -> bool:
        stmt = (
            sa.update(graph_tasks)
            .where(graph_tasks.c.id == task_id, graph_tasks.c.state == "running")
            .values(response=response)
        )
        return bool((await self._conn.execute(stmt)).rowcount)

    # -- SKUs ------------------------------------------------------------------
    async def assign_sku(self, node: str, sku: str, at: datetime) -> bool:
        """Record ``node``'s SKU; True if it changed."""
        row = await self._row(sa.select(node_skus.c.sku).where(node_skus.c.node == node))
        if row is not None and row.sku == sku:
            return False
        stmt = self._insert(node_skus).values(node=node, sku=sku, assigned_at=at)
        stmt = stmt.on_conflict_do_update(
            index_elements=["node"], set_={"sku": sku, "assigned_at": at}
        )
        await self._conn.execute(stmt)
        return True

    async def sku_of(self, node: str) -> str | None:
        row = await self._row(sa.select(node_skus.c.sku).where(node_skus.c.node == node))
        return None if row is None else str(row.sku)

    async def nodes_with_sku(self, sku: str) -> builtins.list[str]:
        stmt = sa.select(node_skus.c.node).where(node_skus.c.sku == sku).order_by(node_skus.c.node)
        return [str(r.node) for r in await self._rows(stmt)]
