"""The commands an agent answers, one module per group (seed 001 and hwfleet's own)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hwfleet.agent.commands import core, decom, device, device_network, maintenance

if TYPE_CHECKING:
    from hwfleet.agent.runtime import AgentRuntime
    from hwfleet.protocol.methods import MethodRegistry


def register_all(registry: MethodRegistry[AgentRuntime]) -> None:
    core.register(registry)
    decom.register(registry)
    device.register(registry)
    device_network.register(registry)
    maintenance.register(registry)


__all__ = ["register_all"]
