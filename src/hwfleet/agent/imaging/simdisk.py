"""Simulated devices re-image file-backed disks: the same steps, against ``DATA_DIR/disks``.

A simulated device's disks are the ones its profile lists (``sda``, ``nvme0n1``…).
``standby.prepare_image`` on one writes a sparse file of the disk's size,
``<data-dir>/disks/<name>.img``, with the same writer (direct writes, hashing,
read-back); ``standby.run_image`` then writes the config drive into that file,
finds the kernel from its grub configuration and reports the kexec-or-reboot
decision without executing it. A disk the profile does not list is refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from hwfleet.agent.hardware.protect import BlockTarget
from hwfleet.protocol.errors import ErrorCode, MethodError

if TYPE_CHECKING:
    from hwfleet.agent.runtime import AgentRuntime


def simulated_disk(rt: AgentRuntime, device: str) -> BlockTarget:
    """The file standing for the profile's disk ``device`` (``sda`` or ``/dev/sda``)."""
    name = os.path.basename(device.strip())
    disks = {d.name: d.size for d in rt.hardware.inventory().disks}
    if name not in disks:
        known = ", ".join(sorted(disks)) or "none"
        raise MethodError(
            f"{device}: this simulated device has no such disk (its disks: {known})",
            ErrorCode.REFUSED,
        )
    if rt.local.data_dir is None:
        raise MethodError("a simulated device without a data dir has no disk files")
    folder = Path(rt.local.data_dir) / "disks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.img"
    if not path.exists():
        with path.open("wb") as handle:
            handle.truncate(disks[name] or 64 * 1024 * 1024)
    return BlockTarget(target=device, path=str(path), name=name, devnum=(0, 0))
