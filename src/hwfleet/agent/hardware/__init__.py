"""The agent's hardware layer: managers with priority dispatch, inventory, erase and QC.

Exports resolve on first use (see hwfleet._lazy): an idle agent does not load the
erase or QC code until a command needs it. Simulated hardware lives in
:mod:`hwfleet.sim.hardware`, handed to the runtime by whoever builds it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hwfleet._lazy import lazy_exports

if TYPE_CHECKING:
    from hwfleet.agent.hardware.base import (
        HardwareDispatcher,
        HardwareManager,
        HardwareSupport,
        IncompatibleHardwareMethodError,
    )
    from hwfleet.agent.hardware.dispatch import default_dispatcher
    from hwfleet.agent.hardware.erase import EraseError, erase_block_devices
    from hwfleet.agent.hardware.protect import BlockTarget, ProtectedDeviceError, inspect_target
    from hwfleet.agent.hardware.qc import QcCheck, QcReport, QcSpec, run_qc
    from hwfleet.agent.hardware.sysfs import SysfsHardwareManager

_EXPORTS = {
    "HardwareDispatcher": "base",
    "HardwareManager": "base",
    "HardwareSupport": "base",
    "IncompatibleHardwareMethodError": "base",
    "default_dispatcher": "dispatch",
    "EraseError": "erase",
    "erase_block_devices": "erase",
    "BlockTarget": "protect",
    "ProtectedDeviceError": "protect",
    "inspect_target": "protect",
    "QcCheck": "qc",
    "QcReport": "qc",
    "QcSpec": "qc",
    "run_qc": "qc",
    "SysfsHardwareManager": "sysfs",
}

__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "BlockTarget",
    "EraseError",
    "HardwareDispatcher",
    "HardwareManager",
    "HardwareSupport",
    "IncompatibleHardwareMethodError",
    "ProtectedDeviceError",
    "QcCheck",
    "QcReport",
    "QcSpec",
    "SysfsHardwareManager",
    "default_dispatcher",
    "erase_block_devices",
    "inspect_target",
    "run_qc",
]
