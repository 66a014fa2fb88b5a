"""ping, status, inventory and scan: the commands every agent answers at once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from hwfleet.protocol import methods
from hwfleet.protocol.inventory import HwInfo, ScanNic, ScanParams

if TYPE_CHECKING:
    from hwfleet.agent.runtime import AgentRuntime


async def ping(rt: AgentRuntime, params: dict[str, Any]) -> dict[str, Any]:
    return params


async def status(rt: AgentRuntime, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "uptime": round(rt.uptime(), 3),
        "name": rt.info.name,
        "version": rt.info.version,
        "st_id": rt.st_id(),
        "st_prog": rt.status.status.st_prog,
        "error_label": rt.status.status.error_label,
        "tasks": rt.tasks.running(),
    }


async def inventory(rt: AgentRuntime, params: dict[str, Any]) -> dict[str, Any]:
    built: dict[str, Any] = msgspec.to_builtins(await rt.inventory())
    return built


async def scan(rt: AgentRuntime, params: ScanParams) -> dict[str, Any]:
    """Seed 000 step 2: PCI and NIC data for the scan, shaped as an ``HwInfo``."""
    rt.status.refuse_in_maintenance("scan")
    with rt.scanning():
        inv = await rt.inventory()
    reply = HwInfo(
        operationid=params.operationid,
        sn=rt.info.serial,
        uuid=rt.info.uuid,
        macinfo=[ScanNic(interface=nic.name, macaddr=nic.mac) for nic in inv.interfaces if nic.mac],
        pci=inv.pci,
    )
    built: dict[str, Any] = msgspec.to_builtins(reply)
    return built


async def task_cancel(rt: AgentRuntime, params: methods.TaskCancelParams) -> dict[str, Any]:
    """Ask a running long task to stop at its next safe point (its next progress report)."""
    return rt.tasks.cancel(params.task_id)
