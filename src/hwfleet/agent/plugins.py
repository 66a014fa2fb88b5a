"""Extension points: hardware managers and agent commands from entry-point groups.

The way ironic-python-agent loads hardware managers: any installed
distribution may declare, in its ``pyproject.toml``,

- ``[project.entry-points."hwfleet.hardware_managers"]``: a
  :class:`~hwfleet.agent.hardware.HardwareManager` subclass (called with no
  arguments); the dispatcher orders every manager by its ``evaluate()``;
- ``[project.entry-points."hwfleet.agent_commands"]``: a
  ``register(registry)`` function that adds methods to the agent's registry.

hwfleet declares its own managers and commands the same way. A plugin that
fails to import, to construct or to register is logged and skipped: one
broken wheel never stops an agent. The other groups are loaded where they are
used: ``hwfleet.mdp_operations`` (:mod:`hwfleet.mdp.operations`),
``hwfleet.graph_tasks`` (:mod:`hwfleet.workflows.registry`) and
``hwfleet.bmc_drivers`` (:mod:`hwfleet.oob.drivers`). See docs/plugins.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from hwfleet.agent.hardware.base import HardwareManager
from hwfleet.entrypoints import EntryPoint, entry_points

if TYPE_CHECKING:
    from hwfleet.agent.runtime import AgentRuntime
    from hwfleet.protocol.methods import MethodRegistry

HARDWARE_MANAGERS = "hwfleet.hardware_managers"
AGENT_COMMANDS = "hwfleet.agent_commands"

log = logging.getLogger(__name__)


def _loaded(group: str) -> Iterator[tuple[EntryPoint, Any]]:
    """Each entry point of ``group`` (sorted by name, so the order is stable) and what it names."""
    for point in sorted(entry_points(group=group), key=lambda p: (p.name, p.value)):
        try:
            yield point, point.load()
        except Exception as exc:  # a broken plugin must not stop the agent
            log.warning("skipping %s plugin %s (%s): %s", group, point.name, point.value, exc)


def hardware_managers() -> list[HardwareManager]:
    """One instance of every installed hardware manager that loads and rates itself."""
    managers: list[HardwareManager] = []
    for point, factory in _loaded(HARDWARE_MANAGERS):
        try:
            manager = factory()
            if not isinstance(manager, HardwareManager):
                raise TypeError(f"{type(manager).__name__} is not a HardwareManager")
            manager.evaluate()  # a manager that cannot rate itself would break dispatch
        except Exception as exc:
            log.warning("skipping hardware manager %s (%s): %s", point.name, point.value, exc)
            continue
        managers.append(manager)
    return managers


def register_commands(registry: MethodRegistry[AgentRuntime]) -> list[str]:
    """Let every installed ``hwfleet.agent_commands`` plugin add its methods; their names."""
    registered: list[str] = []
    for point, register in _loaded(AGENT_COMMANDS):
        adder: Callable[[MethodRegistry[AgentRuntime]], None] = register
        try:
            adder(registry)
        except Exception as exc:
            log.warning("skipping agent commands %s (%s): %s", point.name, point.value, exc)
            continue
        registered.append(point.name)
    return registered
