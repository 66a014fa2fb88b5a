"""``task`` ``methods.getBootProfile.<nodeid>``: which iPXE profile a node's active graph wants.

The boot service (:class:`hwfleet.boot.profiles.BusGraphProfiles`) asks this when a node
PXE-boots. The answer is ``{"profile": name, "options": {str: str}}`` from the option
``bootProfile`` (itself ``{"profile", "options"}``), looked up, most specific first, in:
a running task's options, a ready task's options (the step about to run), the run's
``options.defaults``, then the graph definition's ``options.defaults``.
No active graph, or none of them naming a profile: ``{"profile": null, "options": {}}``.
When the graph has a ``Task.Base.Linux.Commands`` task the options also carry the node's
credential for the bootstrap pair over HTTPS, ``commandsToken`` (:mod:`.nodecreds`), so the
profile's script can hand it to the machine (``$commandsToken``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from hwfleet.store.graphs import GraphRepository, TaskRow
from hwfleet.workflows import nodecreds

if TYPE_CHECKING:
    from hwfleet.workflows.engine import GraphEngine

OPTION = "bootProfile"
COMMANDS = "Task.Base.Linux.Commands"
NONE: dict[str, Any] = {"profile": None, "options": {}}


def parse(value: Any, where: str) -> dict[str, Any] | None:
    """``{"profile", "options"}`` checked; None when absent. Bad shapes name the place."""
    if value is None:
        return None
    if isinstance(value, str):  # shorthand: just the profile name
        value = {"profile": value}
    if not isinstance(value, dict) or not isinstance(value.get("profile"), str):
        raise ValueError(f"{where}.{OPTION}: must be {{'profile': name, 'options': {{...}}}}")
    options = value.get("options") or {}
    if not isinstance(options, dict):
        raise ValueError(f"{where}.{OPTION}.options: must be a JSON object")
    # The boot service puts these into an iPXE script: strings only (it checks characters).
    return {"profile": value["profile"], "options": {str(k): str(v) for k, v in options.items()}}


def _from_tasks(rows: Iterable[TaskRow]) -> dict[str, Any] | None:
    rows = list(rows)
    running = [r for r in rows if r.state == "running"]
    # A ready task is the one about to run (claimed within a poll): its reboot is next.
    ready = sorted((r for r in rows if r.state == "pending" and r.ready), key=lambda r: r.position)
    for row in running + ready:
        found = parse((row.spec.get("options") or {}).get(OPTION), f"tasks.{row.label}.options")
        if found is not None:
            return found
    return None


async def boot_profile(engine: GraphEngine, node: str) -> dict[str, Any]:
    async with engine.store.tx(readonly=True) as tx:
        repo = GraphRepository(tx.conn)
        graph = await repo.active_for_node(node)
        if graph is None:
            return dict(NONE)
        rows = await repo.tasks_of([graph.id])
    found = _from_tasks(rows)
    if found is None:
        found = parse((graph.options.get("defaults") or {}).get(OPTION), "options.defaults")
    if found is None:
        definition = (await engine.library()).graph(graph.name)
        if definition is not None:
            defaults = definition.options.get("defaults") or {}
            found = parse(defaults.get(OPTION), f"{graph.name}.options.defaults")
    if found is None:
        return dict(NONE)
    commands = any(r.spec.get("implementsTask") == COMMANDS for r in rows)
    if commands and engine.credentials is not None:
        token = engine.credentials.mint(graph.id, node)
        found["options"] = {**found["options"], nodecreds.OPTION: token}
    return found
