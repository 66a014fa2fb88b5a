"""Config drive on a GPT image (most cloud images), on a loop device larger than the image.

``sgdisk`` (Debian's gdisk) builds the image and then judges our table: ``sgdisk -v``
checks both headers, both entry arrays and their CRC32s. The agent's path through
``standby.run_image`` is the MBR test's (test_run_image.py); this one drives the same
functions directly on the device, so it costs no controller round trip.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.conftest import service_missing
from tests.integration.hardware.conftest import Attach
from tests.integration.imaging.conftest import MIB
from tests.integration.imaging.test_run_image import boot_partition, isoinfo

from hwfleet.agent.imaging.boot import BootPlan, find_kernel
from hwfleet.agent.imaging.configdrive import ConfigDriveError, write_config_drive

CONFIGDRIVE = {"meta_data": {"uuid": "gpt-1", "hostname": "node-g"}, "user_data": "#!/bin/sh\n"}


def sgdisk(*args: str) -> str:
    if shutil.which("sgdisk") is None:
        service_missing("sgdisk (Debian gdisk) is needed: scripts/system-packages")
    done = subprocess.run(["sgdisk", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def build_gpt_disk(tmp_path: Path) -> Path:
    """An 8 MiB GPT image: partition 1 (ext4, legacy-bootable) with grub.cfg and a kernel."""
    disk = tmp_path / "gpt.raw"
    with disk.open("wb") as handle:
        handle.truncate(8 * MIB)
    sgdisk("-n", "1:2048:+5M", "-t", "1:8300", "-A", "1:set:2", "-c", "1:root", str(disk))
    part = boot_partition(tmp_path, 5 * MIB)
    with disk.open("r+b") as handle:
        handle.seek(MIB)
        handle.write(part.read_bytes())
    return disk


async def test_config_drive_is_added_to_a_gpt_image(loop_device: Attach, tmp_path: Path) -> None:
    disk = await asyncio.to_thread(build_gpt_disk, tmp_path)
    device = loop_device(16 * MIB, random=False)
    with open(device, "r+b") as target:  # the image at the start of a larger disk, as dd leaves it
        target.write(disk.read_bytes())
    placed = await asyncio.to_thread(write_config_drive, device, CONFIGDRIVE)
    assert placed["table"] == "gpt" and placed["partition"] == 2, placed

    verdict = await asyncio.to_thread(sgdisk, "-v", device)
    assert "No problems found" in verdict, verdict
    info = await asyncio.to_thread(sgdisk, "-i", "2", device)
    assert "Partition name: 'config-2'" in info, info
    # The backup table moved to the end of the 16 MiB disk: the new partition may lie past 8 MiB.
    table = await asyncio.to_thread(sgdisk, "-p", device)
    assert "last usable sector is 32734" in table, table

    start = placed["start"]
    with open(device, "rb") as handle:
        handle.seek(start)
        iso = tmp_path / "cd.iso"
        iso.write_bytes(handle.read(placed["bytes"]))
    assert "Volume id: config-2" in await asyncio.to_thread(isoinfo, "-d", "-i", str(iso))
    meta = await asyncio.to_thread(
        isoinfo, "-J", "-i", str(iso), "-x", "/openstack/latest/meta_data.json"
    )
    assert json.loads(meta) == CONFIGDRIVE["meta_data"]

    # The kernel is found through the GPT too (partition 1, from its grub.cfg).
    plan = BootPlan()
    found = await asyncio.to_thread(find_kernel, device, plan, tmp_path)
    assert found is not None and plan.partition == 1, plan.steps
    assert plan.entry is not None and plan.entry.kernel == "/boot/vmlinuz-test"


async def test_a_corrupt_gpt_is_refused_with_the_cause(loop_device: Attach, tmp_path: Path) -> None:
    disk = await asyncio.to_thread(build_gpt_disk, tmp_path)
    device = loop_device(16 * MIB, random=False)
    with open(device, "r+b") as target:
        target.write(disk.read_bytes())
        target.seek(512 + 60)  # inside the primary header's disk GUID: its CRC32 breaks
        target.write(b"\xff")
    with pytest.raises(ConfigDriveError, match="CRC32"):
        await asyncio.to_thread(write_config_drive, device, CONFIGDRIVE)
