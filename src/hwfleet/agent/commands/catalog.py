"""hwfleet's own agent commands by name; each module is imported when one of its methods is called.

An idle agent answers ping and status for its whole life, while the modules behind
``standby.*`` (imaging, about 1 MB resident) and ``device.network.*`` (network
settings, about 0.5 MB) are needed only when such a command arrives (issue 18). So
hwfleet's entries in the ``hwfleet.agent_commands`` group (pyproject.toml) name the
functions here, which register every method by reference
(:meth:`~hwfleet.protocol.methods.MethodRegistry.defer`): the registry lists and
accepts each method from the start, and imports its handler and params struct on the
first call. Third-party entry points register handlers directly, as before
(:mod:`hwfleet.agent.plugins`).

References are strings, so ``tests/unit/agent/test_command_catalog.py`` resolves every
one of them: a misspelt name fails there, not on a device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hwfleet.protocol import methods

if TYPE_CHECKING:
    from hwfleet.agent.runtime import AgentRuntime
    from hwfleet.protocol.methods import MethodRegistry

_CORE = "hwfleet.agent.commands.core"
_DECOM = "hwfleet.agent.commands.decom"
_DEVICE = "hwfleet.agent.commands.device"
_NETWORK = "hwfleet.agent.commands.device_network"
_MAINTENANCE = "hwfleet.agent.commands.maintenance"
_IMAGING = "hwfleet.agent.imaging.commands"
_RUN_IMAGE = "hwfleet.agent.imaging.run"


def core(registry: MethodRegistry[AgentRuntime]) -> None:
    """ping, status, inventory, scan, task_cancel."""
    registry.defer(methods.PING, f"{_CORE}:ping")
    registry.defer(methods.STATUS, f"{_CORE}:status")
    registry.defer(methods.INVENTORY, f"{_CORE}:inventory")
    registry.defer(methods.SCAN, f"{_CORE}:scan", "hwfleet.protocol.inventory:ScanParams")
    registry.defer(
        methods.TASK_CANCEL, f"{_CORE}:task_cancel", "hwfleet.protocol.methods:TaskCancelParams"
    )


def decom(registry: MethodRegistry[AgentRuntime]) -> None:
    """Seed 001's ``decom.*`` long tasks."""
    registry.defer(methods.DECOM_DISK_ERASE, f"{_DECOM}:disk_erase", f"{_DECOM}:DiskEraseParams")
    registry.defer(methods.DECOM_QC, f"{_DECOM}:qc", f"{_DECOM}:QcParams")
    registry.defer(
        methods.DECOM_FIRMWARE_SECURE, f"{_DECOM}:firmware_secure", f"{_DECOM}:FirmwareParams"
    )


def device(registry: MethodRegistry[AgentRuntime]) -> None:
    """Seed 004's name, admin password and trusted keys."""
    registry.defer(methods.DEVICE_RENAME, f"{_DEVICE}:rename", f"{_DEVICE}:RenameParams")
    registry.defer(
        methods.DEVICE_SET_PASSWORD, f"{_DEVICE}:set_password", f"{_DEVICE}:SetPasswordParams"
    )
    registry.defer(methods.DEVICE_TRUST_LIST, f"{_DEVICE}:trust_list")
    registry.defer(methods.DEVICE_TRUST_ADD, f"{_DEVICE}:trust_add", f"{_DEVICE}:TrustAddParams")
    registry.defer(
        methods.DEVICE_TRUST_REMOVE, f"{_DEVICE}:trust_remove", f"{_DEVICE}:TrustRemoveParams"
    )


def device_network(registry: MethodRegistry[AgentRuntime]) -> None:
    """Seed 004's network settings and Wi-Fi list."""
    interface = f"{_NETWORK}:InterfaceParams"
    registry.defer(methods.DEVICE_NETWORK_GET, f"{_NETWORK}:network_get", interface)
    registry.defer(
        methods.DEVICE_NETWORK_SET,
        f"{_NETWORK}:network_set",
        "hwfleet.agent.netconfig.model:NetworkParams",
    )
    registry.defer(methods.DEVICE_WIFI_LIST, f"{_NETWORK}:wifi_list", interface)


def maintenance(registry: MethodRegistry[AgentRuntime]) -> None:
    """``device.maintenance``."""
    params = f"{_MAINTENANCE}:MaintenanceParams"
    registry.defer(methods.DEVICE_MAINTENANCE, f"{_MAINTENANCE}:maintenance", params)


def imaging(registry: MethodRegistry[AgentRuntime]) -> None:
    """Seed 001's ``standby.*`` (and its ``standbye.*`` spelling: the registry maps it)."""
    registry.defer(
        methods.STANDBY_CACHE_IMAGES, f"{_IMAGING}:cache_images", f"{_IMAGING}:CacheImagesParams"
    )
    registry.defer(
        methods.STANDBY_PREPARE_IMAGE,
        f"{_IMAGING}:prepare_image",
        f"{_IMAGING}:PrepareImageParams",
    )
    registry.defer(
        methods.STANDBY_RUN_IMAGE, f"{_RUN_IMAGE}:run_image", f"{_RUN_IMAGE}:RunImageParams"
    )
