"""Seed 001 decommission commands: disk erase and quality control, as long tasks.

``decom.disk_erase`` needs explicit targets and refuses protected devices
(mounted, holding the root filesystem, read-only): erasing "everything
attached" is exactly the mistake a fleet tool must not make.
``decom.firmware_secure`` goes through fwupd when the device has it
(:mod:`hwfleet.agent.fwupd`) and is refused, saying so, when it does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from hwfleet.agent.tasks import Report, TaskFailedError
from hwfleet.protocol import methods
from hwfleet.protocol.errors import ErrorCode, MethodError

if TYPE_CHECKING:
    from hwfleet.agent.runtime import AgentRuntime


class DiskEraseParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    task_id: str
    devices: list[str]
    method: str = "zero"
    verify: bool = True

    def __post_init__(self) -> None:
        if not self.devices:
            raise ValueError("devices must name at least one block device explicitly")
        if self.method not in ("zero", "discard"):
            raise ValueError(f"method must be 'zero' or 'discard', not {self.method!r}")


class QcParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    task_id: str
    spec: dict[str, Any] = msgspec.field(default_factory=dict)


async def disk_erase(rt: AgentRuntime, params: DiskEraseParams) -> dict[str, Any]:
    from hwfleet.agent.hardware import (
        EraseError,
        ProtectedDeviceError,
        erase_block_devices,
        inspect_target,
    )

    if rt.simulated:
        raise MethodError("a simulated device has no block devices to erase", ErrorCode.REFUSED)
    try:
        for target in params.devices:
            inspect_target(target)
    except ProtectedDeviceError as exc:
        raise MethodError(str(exc), ErrorCode.REFUSED) from None

    async def work(report: Report) -> dict[str, Any]:
        try:
            return await erase_block_devices(
                params.devices, report=report, method=params.method, verify=params.verify
            )
        except (ProtectedDeviceError, EraseError) as exc:
            raise TaskFailedError(str(exc)) from None

    return rt.tasks.start(params.task_id, methods.DECOM_DISK_ERASE, work)


async def qc(rt: AgentRuntime, params: QcParams) -> dict[str, Any]:
    from hwfleet.agent.hardware import QcSpec, run_qc

    try:
        spec = msgspec.convert(params.spec, QcSpec)
    except msgspec.ValidationError as exc:
        raise MethodError(f"bad qc spec: {exc}", ErrorCode.BAD_PARAMS) from None

    async def work(report: Report) -> dict[str, Any]:
        inventory = await rt.inventory()
        await report(50.0, None)
        outcome = run_qc(spec, inventory)
        result: dict[str, Any] = msgspec.to_builtins(outcome)
        if not outcome.passed:
            failed = [c.name for c in outcome.checks if not c.passed]
            raise TaskFailedError(f"QC failed: {', '.join(failed)}", result)
        return result

    return rt.tasks.start(params.task_id, methods.DECOM_QC, work)


class FirmwareParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    task_id: str
    spec: dict[str, Any] = msgspec.field(default_factory=dict)
    dry_run: bool = False


async def firmware_secure(rt: AgentRuntime, params: FirmwareParams) -> dict[str, Any]:
    from hwfleet.agent import fwupd

    if rt.simulated:
        raise MethodError("a simulated device has no firmware to update", ErrorCode.REFUSED)
    try:  # refused before a task starts: no fwupd, or a spec it cannot apply
        tool = fwupd.Fwupd.find()
        spec = fwupd.parse_spec(params.spec)
    except fwupd.FwupdError as exc:
        raise MethodError(str(exc), ErrorCode.REFUSED) from None

    async def work(report: Report) -> dict[str, Any]:
        try:
            return await fwupd.firmware_secure(tool, spec, dry_run=params.dry_run, report=report)
        except fwupd.FwupdError as exc:
            raise TaskFailedError(str(exc)) from None

    return rt.tasks.start(params.task_id, methods.DECOM_FIRMWARE_SECURE, work)
