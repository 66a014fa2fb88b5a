"""A simulated device's network: settings are recorded, never applied (DESIGN §8).

The :class:`~hwfleet.agent.netconfig.backend.NetworkBackend` the simulator hands
each simulated runtime: its interfaces and Wi-Fi list are the profile's, and
``device.network.set`` only records (the agent keeps the record in its data dir).
"""

from __future__ import annotations

from typing import Any

from hwfleet.agent.netconfig.model import NetworkSettings
from hwfleet.sim.profiles import ProfileDevice

#: The interface a simulated device without NICs in its profile pretends to have.
SIM_DEFAULT_INTERFACE = "sim0"


class SimulatedNetwork:
    simulated = True

    def __init__(self, device: ProfileDevice) -> None:
        self.device = device

    def interface_names(self) -> list[str] | None:
        return [nic.name for nic in self.device.interfaces] or [SIM_DEFAULT_INTERFACE]

    async def read_live(self, interface: str) -> dict[str, Any] | None:
        return None

    async def apply(self, settings: NetworkSettings) -> dict[str, Any]:
        return {}

    async def scan_wifi(self, interface: str | None) -> list[dict[str, Any]]:
        # Exactly what the profile says, every key present even when the profile left it out.
        return [
            {"ssid": net.ssid, "signal": net.signal, "security": net.security}
            for net in self.device.wifi
        ]
