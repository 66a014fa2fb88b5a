"""The commands an agent answers, one module per group (seed 001 and hwfleet's own).

Each group is declared in the ``hwfleet.agent_commands`` entry-point group
(pyproject.toml), where third-party commands join them (:mod:`hwfleet.agent.plugins`).
hwfleet's own groups point at :mod:`.catalog`, which registers their methods by name:
a command's module is imported when the command first arrives, not at start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hwfleet.agent.runtime import AgentRuntime
    from hwfleet.protocol.methods import MethodRegistry


def register_all(registry: MethodRegistry[AgentRuntime]) -> None:
    from hwfleet.agent.plugins import register_commands

    register_commands(registry)
    if "ping" not in registry.names():
        raise RuntimeError(
            "hwfleet's own agent commands are not installed (no hwfleet.agent_commands "
            "entry points): reinstall hwfleet (pip install -e .)"
        )


__all__ = ["register_all"]
