"""Where ``device.network.*`` and ``device.wifi.list`` act: a :class:`NetworkBackend`.

The runtime is handed one. A real agent gets :class:`LiveNetwork` (NetworkManager
or iproute2 via :mod:`.apply`, only on the interface the operator names); the
simulator hands in its own (:mod:`hwfleet.sim.network`) that records settings
and never touches the machine. The commands never ask which kind they have.
"""

from __future__ import annotations

from typing import Any, Protocol

from hwfleet.agent.netconfig.model import NetworkSettings


class NetworkBackend(Protocol):
    #: Reported as ``simulated`` in every reply.
    simulated: bool

    def interface_names(self) -> list[str] | None:
        """The only interfaces settings may name (the first is the default); None: any."""
        ...

    async def read_live(self, interface: str) -> dict[str, Any] | None:
        """The interface's live state; None when the recorded settings are all there is."""
        ...

    async def apply(self, settings: NetworkSettings) -> dict[str, Any]:
        """Put the settings in place; extra reply fields (empty: recorded only)."""
        ...

    async def scan_wifi(self, interface: str | None) -> list[dict[str, Any]]: ...


class LiveNetwork:
    """The machine's own network, changed with NetworkManager or iproute2."""

    simulated = False

    def interface_names(self) -> list[str] | None:
        return None

    async def read_live(self, interface: str) -> dict[str, Any] | None:
        from hwfleet.agent.netconfig.apply import read_live

        return await read_live(interface)

    async def apply(self, settings: NetworkSettings) -> dict[str, Any]:
        from hwfleet.agent.netconfig.apply import apply

        return {"applied": True, **await apply(settings)}

    async def scan_wifi(self, interface: str | None) -> list[dict[str, Any]]:
        from hwfleet.agent.netconfig.apply import scan_wifi

        return await scan_wifi(interface)
