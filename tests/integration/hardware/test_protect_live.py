"""Protection checks: this machine's root disk, and real loop devices seen through a fake sysfs.

Only inspection runs here; nothing is opened for writing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.conftest import service_missing

from hwfleet.agent.hardware import ProtectedDeviceError, inspect_target
from hwfleet.agent.hardware.protect import mounted_devices

from .conftest import MIB, Attach


def root_device_node() -> str:
    number = os.stat("/").st_dev
    link = f"/sys/dev/block/{os.major(number)}:{os.minor(number)}"
    if not os.path.exists(link):
        service_missing("/ is not on a block device here (overlay or network root)")
    node = "/dev/" + os.path.basename(os.path.realpath(link))
    if not os.path.exists(node):
        service_missing(f"{node} has no device node in this container")
    return node


def test_the_root_filesystem_device_is_refused() -> None:
    node = root_device_node()
    with pytest.raises(ProtectedDeviceError, match="root filesystem"):
        inspect_target(node)
    with pytest.raises(ProtectedDeviceError, match="root filesystem"):
        inspect_target(os.path.basename(node))


def test_mount_table_knows_the_root_device() -> None:
    number = os.stat("/").st_dev
    assert mounted_devices().get((os.major(number), os.minor(number))) == "/"


def fake_sysfs(root: Path, device: str, *, mountinfo: str = "", swaps: str = "") -> Path:
    """A sysfs/procfs view of ``device`` whose partitions, holders and mounts the test chooses."""
    number = os.stat(device).st_rdev
    name = os.path.basename(device)
    real = root / "sys/devices/virtual/block" / name
    (real / "holders").mkdir(parents=True)
    (real / "ro").write_text("0\n")
    (real / "dev").write_text(f"{os.major(number)}:{os.minor(number)}\n")
    (root / "sys/dev/block").mkdir(parents=True)
    (root / f"sys/dev/block/{os.major(number)}:{os.minor(number)}").symlink_to(real)
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/mountinfo").write_text(mountinfo)
    (root / "proc/swaps").write_text("Filename Type Size Used Priority\n" + swaps)
    return real


def add_partition(real: Path, name: str, devnum: str) -> Path:
    part = real / name
    (part / "holders").mkdir(parents=True)
    (part / "partition").write_text("1\n")
    (part / "dev").write_text(devnum + "\n")
    return part


def test_clean_device_passes(loop_device: Attach, tmp_path: Path) -> None:
    device = loop_device(MIB)
    fake_sysfs(tmp_path, device)
    target = inspect_target(device, sys_root=tmp_path)
    assert (target.path, target.name) == (device, os.path.basename(device))


def test_mounted_partition_is_found_through_mountinfo(loop_device: Attach, tmp_path: Path) -> None:
    device = loop_device(MIB)
    real = fake_sysfs(
        tmp_path,
        device,
        mountinfo="36 25 259:7 / /srv/my\\040data rw,relatime shared:1 - ext4 /dev/root rw\n",
    )
    add_partition(real, "loopXp1", "259:7")
    with pytest.raises(
        ProtectedDeviceError, match="its partition loopXp1 is mounted at /srv/my data"
    ):
        inspect_target(device, sys_root=tmp_path)


def test_partition_mounted_as_root_is_named(loop_device: Attach, tmp_path: Path) -> None:
    device = loop_device(MIB)
    real = fake_sysfs(tmp_path, device, mountinfo="1 0 259:8 / / rw - ext4 /dev/root rw\n")
    add_partition(real, "loopXp2", "259:8")
    with pytest.raises(
        ProtectedDeviceError, match="its partition loopXp2 holds the root filesystem"
    ):
        inspect_target(device, sys_root=tmp_path)


def test_holders_on_the_device_or_a_partition_are_refused(
    loop_device: Attach, tmp_path: Path
) -> None:
    device = loop_device(MIB)
    real = fake_sysfs(tmp_path, device)
    part = add_partition(real, "loopXp1", "259:9")
    (part / "holders/md0").mkdir()
    (tmp_path / "sys/class/block/md0/holders/dm-3").mkdir(parents=True)
    with pytest.raises(ProtectedDeviceError, match=r"in use by dm-3, md0 \(device-mapper"):
        inspect_target(device, sys_root=tmp_path)


def test_swap_is_refused(loop_device: Attach, tmp_path: Path) -> None:
    device = loop_device(MIB)
    fake_sysfs(tmp_path, device, swaps=f"{device} partition 1020 0 -2\n")
    with pytest.raises(ProtectedDeviceError, match="is in use as swap"):
        inspect_target(device, sys_root=tmp_path)


def test_mount_source_path_is_matched_when_mountinfo_number_is_anonymous(
    loop_device: Attach, tmp_path: Path
) -> None:
    # btrfs reports an anonymous 0:NN device number; the source path still names the disk.
    device = loop_device(MIB)
    fake_sysfs(tmp_path, device, mountinfo=f"40 1 0:52 / /data rw - btrfs {device} rw\n")
    with pytest.raises(ProtectedDeviceError, match="is mounted at /data"):
        inspect_target(device, sys_root=tmp_path)
