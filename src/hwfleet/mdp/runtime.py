"""What the diagnostics endpoint needs of an agent, as a protocol.

The agent (and each simulated device) passes its ``AgentRuntime``; ``hwfleet.mdp`` never
imports the agent package, so the agent can import this one without a cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


class _Info(Protocol):
    @property
    def uuid(self) -> str: ...


class _Local(Protocol):
    @property
    def data_dir(self) -> Path | None: ...


class MachineRuntime(Protocol):
    #: Set when the endpoint starts; the ``mdp.key`` agent command hands it to the controller.
    mdp_key: bytes | None
    mdp_port: int

    @property
    def simulated(self) -> bool: ...

    @property
    def info(self) -> _Info: ...

    @property
    def local(self) -> _Local: ...

    async def inventory(self) -> Any: ...
