"""The dispatcher the agent uses: the real machine, or exactly one simulated device."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hwfleet.agent.hardware.base import HardwareDispatcher
from hwfleet.agent.hardware.simulated import SimulatedHardwareManager
from hwfleet.agent.hardware.sysfs import SysfsHardwareManager

if TYPE_CHECKING:
    from hwfleet.sim.profiles import ProfileDevice  # a real agent never loads the simulator


def default_dispatcher(simulated: ProfileDevice | None = None) -> HardwareDispatcher:
    """Sysfs for a real agent; for a simulated one only the profile, so no real fact leaks in."""
    if simulated is not None:
        return HardwareDispatcher([SimulatedHardwareManager(simulated)])
    return HardwareDispatcher([SysfsHardwareManager()])
