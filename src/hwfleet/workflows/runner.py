"""The task runner: claims ready tasks with a lease, heartbeats, runs them, records the end.

Several runners (controller replicas) share one store: a claim is an atomic conditional
UPDATE, a lease that is not renewed (the runner died) expires and the task becomes
claimable again — retried if its ``retries`` allow, else failed with the reason. The
heartbeat also tells a runner which of its tasks were taken away (cancelled graph): those
stop at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from hwfleet.store import Store
from hwfleet.store.events import EventRepository
from hwfleet.store.graphs import GraphRepository, TaskEnd, TaskRow
from hwfleet.store.records import EventRecord
from hwfleet.types import utcnow
from hwfleet.workflows import events
from hwfleet.workflows.basetasks import TaskContext, TaskFailedError
from hwfleet.workflows.events import Announcer, Event, task_finished
from hwfleet.workflows.progress import Shapes, advance_many
from hwfleet.workflows.registry import BaseTaskRegistry

log = logging.getLogger(__name__)

LOST = "the controller running it stopped (lease expired) and it has no retries left"


@dataclass(frozen=True, slots=True)
class RunnerSettings:
    owner: str
    lease: float = 5.0
    heartbeat: float = 1.0
    poll: float = 0.5
    max_in_flight: int = 100
    default_timeout: float = 3600.0


@dataclass(frozen=True, slots=True)
class _End:
    execution: Execution
    end: TaskEnd  # what the store records
    done: asyncio.Future[None]


@dataclass(slots=True)
class Execution:
    row: TaskRow
    node: str | None
    task: asyncio.Task[Any] | None = None
    #: Set when something outside ended it (node gone): the reason it failed.
    stop_reason: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


ContextFactory = Callable[[TaskRow, str | None], TaskContext]
#: Whether this runner can execute a task now (e.g. reach its node); False gives it back.
CanRun = Callable[[TaskRow, str | None], Awaitable[bool]]
#: How long a task given back is not claimed again by this runner.
_RELEASE_FOR = 2.0


class TaskRunner:
    def __init__(
        self,
        store: Store,
        events: Announcer,
        bases: BaseTaskRegistry,
        settings: RunnerSettings,
        make_context: ContextFactory,
        can_run: CanRun | None = None,
    ) -> None:
        self._can_run = can_run
        self._released: dict[str, float] = {}
        self._ends: list[_End] = []
        self._ends_waiting = asyncio.Event()
        self._store = store
        self._events = events
        self._bases = bases
        self.settings = settings
        self._make_context = make_context
        self._running: dict[str, Execution] = {}
        #: Task and node shapes of running graphs (no JSON re-read per advance or claim).
        self.shapes = Shapes()
        self._wake = asyncio.Event()
        self._loops: list[asyncio.Task[Any]] = []
        self.on_change: Callable[[str], None] = lambda graph_id: None

    async def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._claim_forever(), name="graph runner"),
            asyncio.create_task(self._heartbeat_forever(), name="graph heartbeat"),
            asyncio.create_task(self._commit_forever(), name="graph task ends"),
        ]

    async def close(self) -> None:
        for loop in self._loops:
            loop.cancel()
        running = [e.task for e in self._running.values() if e.task is not None]
        for task in running:
            task.cancel()
        await asyncio.gather(*self._loops, *running, return_exceptions=True)
        self._loops = []

    def wake(self) -> None:
        self._wake.set()

    def stop_local(self, task_id: str, reason: str | None = None) -> bool:
        """Stop a task this runner executes (cancelled elsewhere, or its node is gone)."""
        execution = self._running.get(task_id)
        if execution is None or execution.task is None:
            return False
        execution.stop_reason = reason
        execution.task.cancel()
        return True

    def running_on(self, node: str) -> list[str]:
        return [tid for tid, e in self._running.items() if e.node == node]

    # -- loops -----------------------------------------------------------------
    async def _claim_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.poll):  # other replicas' work, leases
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._claim()
            except Exception:
                log.exception("claiming graph tasks failed; retrying")

    async def _claim(self) -> None:
        free = self.settings.max_in_flight - len(self._running)
        if free <= 0:
            return
        now = utcnow()
        until = now + timedelta(seconds=self.settings.lease)
        clock = asyncio.get_running_loop().time()
        self._released = {k: t for k, t in self._released.items() if t > clock}
        skip = list(self._released)

        async def claim(tx: Any) -> list[tuple[TaskRow, str | None]]:
            repo = GraphRepository(tx.conn)
            rows = await repo.claim(self.settings.owner, now, until, free, skip=skip)
            nodes: dict[str, str | None] = {}
            for row in rows:
                known, node = self.shapes.node(row.graph_id)
                if known:
                    nodes[row.graph_id] = node
            nodes.update(await repo.nodes_of([r.graph_id for r in rows if r.graph_id not in nodes]))
            return [(r, nodes.get(r.graph_id)) for r in rows]

        claimed = await self._store.write(claim)
        for row, node in claimed:
            execution = Execution(row, node)
            self._running[row.id] = execution
            execution.task = asyncio.create_task(self._execute(execution), name=f"task {row.id}")
        for row, _node in claimed:
            key, body = events.graph_progress(
                row.graph_id,
                {
                    "taskId": row.id,
                    "label": row.label,
                    "state": "running",
                    "attempts": row.attempts,
                },
            )
            await self._events.progress(key, body)
        if len(claimed) == free:
            self._wake.set()  # there may be more

    async def _heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat)  # the heartbeat period itself
            ids = list(self._running)
            if not ids:
                continue
            until = utcnow() + timedelta(seconds=self.settings.lease)
            try:
                held = await self._renew(ids, until)
            except Exception:
                log.exception("graph heartbeat failed; retrying")
                continue
            for task_id in ids:
                if task_id not in held and task_id in self._running:
                    self.stop_local(task_id)  # cancelled, or taken after our lease lapsed

    async def _renew(self, ids: list[str], until: datetime) -> set[str]:
        owner = self.settings.owner
        return await self._store.write(
            lambda tx: GraphRepository(tx.conn).heartbeat(owner, ids, until)
        )

    # -- one task --------------------------------------------------------------
    async def _execute(self, execution: Execution) -> None:
        row = execution.row
        spec = row.spec
        retries = int(spec.get("retries", 0))
        try:
            if self._can_run is not None and not await self._can_run(row, execution.node):
                owner = self.settings.owner
                await self._store.write(lambda tx: GraphRepository(tx.conn).release(row.id, owner))
                self._released[row.id] = asyncio.get_running_loop().time() + _RELEASE_FOR
                return
            if row.attempts > retries + 1:
                await self._end(execution, "failed", LOST, None)
                return
            base = self._bases.get(str(spec["implementsTask"]))
            if base is None:
                await self._end(execution, "failed", f"unknown base task {spec['implementsTask']}")
                return
            timeout = spec.get("timeout") or self.settings.default_timeout
            try:
                async with asyncio.timeout(timeout):
                    result = await base().run(self._make_context(row, execution.node))
            except TimeoutError:
                await self._end(execution, "timeout", f"no result within {timeout:g} s")
            except asyncio.CancelledError:
                if execution.stop_reason is None:
                    raise  # cancelled graph or shutdown: the store already says what happened
                await self._end(execution, "failed", execution.stop_reason)
            except TaskFailedError as exc:
                await self._fail(execution, str(exc), retries)
            except Exception as exc:
                log.exception("graph task %s (%s) failed", row.id, row.label)
                await self._fail(execution, f"{type(exc).__name__}: {exc}", retries)
            else:
                await self._end(execution, "succeeded", None, result)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception(
                "recording the end of graph task %s failed (its lease will expire)", row.id
            )
        finally:
            self._running.pop(row.id, None)
            execution.done.set()

    async def _fail(self, execution: Execution, error: str, retries: int) -> None:
        row = execution.row
        if row.attempts <= retries:
            requeued = await self._store.write(
                lambda tx: GraphRepository(tx.conn).requeue(row.id, self.settings.owner, error)
            )
            if requeued:
                self._wake.set()
                return
        await self._end(execution, "failed", error)

    async def _end(
        self,
        execution: Execution,
        state: str,
        error: str | None,
        result: dict[str, Any] | None = None,
    ) -> None:
        """Queue the end for the committer and wait until it is in the store."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        end = TaskEnd(execution.row.id, state, error, result, utcnow())
        self._ends.append(_End(execution, end, done))
        self._ends_waiting.set()
        await done

    async def _commit_forever(self) -> None:
        """Group commit: every task end waiting now goes into one transaction.

        Each end is still its own conditional UPDATE (a task cancelled meanwhile is not
        overwritten) and each graph is advanced once per batch, after all its ends.
        """
        while True:
            await self._ends_waiting.wait()
            self._ends_waiting.clear()
            batch, self._ends = self._ends, []
            if not batch:
                continue
            try:
                records, ready, graphs = await self._store.write(
                    lambda tx, batch=batch: self._commit(tx, batch)  # type: ignore[misc]
                )
            except Exception as exc:
                for end in batch:
                    if not end.done.done():
                        end.done.set_exception(exc)
                continue
            await announce(self._events, records)
            if ready:
                self._wake.set()
            for graph_id in graphs:
                self.on_change(graph_id)
            for end in batch:
                if not end.done.done():
                    end.done.set_result(None)

    async def _commit(self, tx: Any, batch: list[_End]) -> tuple[list[EventRecord], bool, set[str]]:
        repo, ev = GraphRepository(tx.conn), EventRepository(tx.conn)
        # Ours only: a task cancelled or taken away meanwhile is not ours to record.
        mine = await repo.finish_tasks(self.settings.owner, [queued.end for queued in batch])
        pending: list[Event] = []
        graphs: dict[str, None] = {}
        for queued in batch:
            row, end = queued.execution.row, queued.end
            if row.id in mine:
                node = queued.execution.node
                pending.append(
                    task_finished(row.id, row.graph_id, row.label, end.state, end.error, node)
                )
                graphs[row.graph_id] = None
        at = utcnow()
        # The whole batch's readiness, graph ends and events in a few statements.
        ready = await advance_many(repo, list(graphs), at, pending, self.shapes)
        records = await ev.add_many(pending, at=at)
        return records, ready, set(graphs)


async def announce(publisher: Announcer, records: list[EventRecord]) -> None:
    for record in records:
        await publisher.announce(
            record.routing_key, record.payload, event_id=record.id, at=record.at
        )
