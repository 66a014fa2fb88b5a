"""The dispatcher a real agent uses (a simulated one gets its own from :mod:`hwfleet.sim`)."""

from __future__ import annotations

from hwfleet.agent.hardware.base import HardwareDispatcher
from hwfleet.agent.hardware.sysfs import SysfsHardwareManager


def default_dispatcher() -> HardwareDispatcher:
    """The machine's own hardware, read from sysfs."""
    return HardwareDispatcher([SysfsHardwareManager()])
