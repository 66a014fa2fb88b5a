"""The dispatcher a real agent uses: every installed hardware manager, best first.

Managers come from the ``hwfleet.hardware_managers`` entry-point group
(:mod:`hwfleet.agent.plugins`), hwfleet's sysfs manager among them; a simulated
agent gets its own dispatcher from :mod:`hwfleet.sim`.
"""

from __future__ import annotations

from hwfleet.agent.hardware.base import HardwareDispatcher


def default_dispatcher() -> HardwareDispatcher:
    """The machine's own hardware, asked of every installed manager in priority order."""
    from hwfleet.agent.plugins import hardware_managers

    managers = hardware_managers()
    if not managers:
        raise RuntimeError(
            "no hardware manager is installed (no hwfleet.hardware_managers entry points): "
            "reinstall hwfleet (pip install -e .)"
        )
    return HardwareDispatcher(managers)
