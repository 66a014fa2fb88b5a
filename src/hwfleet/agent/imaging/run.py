"""``standby.run_image``: config drive, boot loader default, then kexec into the image (or reboot).

The device must already hold the image (``standby.prepare_image``). Steps, each
reported in the task's result: write the ``config-2`` drive
(:mod:`.configdrive`), make the image's boot loader the default
(:func:`.efi.uefi_default`), find the kernel from the image's grub
configuration and load it with ``kexec -l``. Then, once the task's final status
is on its way, ``kexec -e`` (or a reboot when no kernel or no kexec was found).
``boot: false`` stops before that last step (the tests, and an operator who
wants to look first).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from hwfleet.agent.imaging.boot import BootPlan, find_kernel, kexec_load
from hwfleet.agent.imaging.commands import _check_id, target_of
from hwfleet.agent.imaging.configdrive import ConfigDriveError, write_config_drive
from hwfleet.agent.imaging.efi import uefi_default
from hwfleet.agent.tasks import Report, TaskFailedError
from hwfleet.protocol import methods

if TYPE_CHECKING:
    from hwfleet.agent.runtime import AgentRuntime

log = logging.getLogger(__name__)


class RunImageParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    task_id: str
    image: str
    device: str
    configdrive: dict[str, Any]
    boot: bool = True

    def __post_init__(self) -> None:
        _check_id(self.image)
        if not self.device.strip():
            raise ValueError("device must name the disk holding the image explicitly")
        if not isinstance(self.configdrive.get("meta_data"), dict):
            raise ValueError("configdrive.meta_data must be an object")


def plan_boot(
    disk: str, configdrive: dict[str, Any], keep: Path, *, load: bool, firmware: bool = True
) -> BootPlan:
    """Worker thread: every step up to (not including) the jump into the image.

    ``load``: really ``kexec -l`` the kernel (not when the caller will not boot);
    ``firmware``: may change the machine's boot order (never for a simulated device).
    """
    plan = BootPlan()
    placed = write_config_drive(disk, configdrive)
    plan.steps.append(
        f"config drive (config-2, ISO 9660) written as partition {placed['partition']} "
        f"at byte {placed['start']}"
    )
    if firmware:
        uefi_default(disk, plan)
    else:
        plan.steps.append("simulated: the firmware boot order is left alone")
    found = find_kernel(disk, plan, keep)
    if found is None:
        plan.steps.append("no kernel found in the image's grub configuration: reboot")
        return plan
    if shutil.which("kexec") is None:
        plan.steps.append("kexec-tools is not installed: reboot")
        return plan
    assert plan.entry is not None
    if not load:
        plan.action = "kexec"
        plan.steps.append(f"would kexec {plan.entry.kernel} ({plan.entry.cmdline}); boot is off")
        return plan
    try:
        kexec_load(found[0], found[1], plan.entry.cmdline)
    except OSError as exc:
        plan.steps.append(f"{exc}: reboot")
        return plan
    plan.action = "kexec"
    plan.steps.append(f"kexec loaded {plan.entry.kernel} ({plan.entry.cmdline})")
    return plan


async def _jump(rt: AgentRuntime, task_id: str, action: str) -> None:
    """After the task's final status has been handed over, leave for the image."""
    running = rt.tasks._running.get(task_id)  # the task this call ends
    if running is not None:
        await asyncio.wait({running})
    command = ["kexec", "-e"] if action == "kexec" else ["systemctl", "reboot"]
    log.warning("run_image: %s", " ".join(command))
    await asyncio.to_thread(subprocess.run, command, check=False)


async def run_image(rt: AgentRuntime, params: RunImageParams) -> dict[str, Any]:
    target = target_of(rt, params.device)
    # A simulated device reports the decision; it never kexecs or reboots this machine.
    boot = params.boot and not rt.simulated

    async def work(report: Report) -> dict[str, Any]:
        await report(0.0, None)
        with tempfile.TemporaryDirectory(prefix="hwfleet-kernel-") as keep:
            try:
                plan = await asyncio.to_thread(
                    plan_boot,
                    target.path,
                    params.configdrive,
                    Path(keep),
                    load=boot,
                    firmware=not rt.simulated,
                )
            except (ConfigDriveError, OSError) as exc:
                raise TaskFailedError(str(exc)) from None
        result = {"image": params.image, "device": target.path, **plan.to_json()}
        if boot:
            asyncio.get_running_loop().create_task(_jump(rt, params.task_id, plan.action))
        result["booting"] = boot
        result["simulated"] = rt.simulated
        return result

    return rt.tasks.start(params.task_id, methods.STANDBY_RUN_IMAGE, work)
