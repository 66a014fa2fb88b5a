"""Which block devices an erase may touch: refuse anything in use, read-only or not a disk.

Every refusal is a :class:`ProtectedDeviceError` that says why, raised before a
single byte is written. The checks look at the device, its partitions and
everything stacked on it (device-mapper, md, LVM ``holders``), against the
mount table (``/proc/self/mountinfo``, which also names devices by number
when the source path is something like ``/dev/root``), ``/proc/swaps`` and
the device holding ``/``. The erase then opens the device with ``O_EXCL``,
which the kernel refuses while anything has it mounted or claimed: a last
guard that also keeps it from being mounted while the erase runs.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from hwfleet.agent.hardware._sysfs import list_dir, read_flag, read_str, under
from hwfleet.errors import DeviceError

DevNum = tuple[int, int]
#: Where a swap device "is mounted", in :func:`mounted_devices`.
_SWAP = "[swap]"


class ProtectedDeviceError(DeviceError):
    """This target must not be erased; ``reason`` says why."""

    def __init__(self, target: str, reason: str) -> None:
        super().__init__(f"{target}: {reason}")
        self.target = target
        self.reason = reason


@dataclass(frozen=True)
class BlockTarget:
    """A device cleared for erasing."""

    target: str
    path: str
    name: str
    devnum: DevNum


def inspect_target(
    target: str, *, sys_root: Path | str = "/", dev_root: Path | str = "/dev"
) -> BlockTarget:
    """Resolve ``sda`` / ``/dev/sda`` / ``/dev/disk/by-id/…`` and check it is safe to erase."""
    if not target or not target.strip():
        raise ProtectedDeviceError(repr(target), "no device named")
    if target.strip().lower() in ("all", "*"):
        raise ProtectedDeviceError(target, "erase needs explicit device names, not 'all'")
    if "/" in target:
        if not os.path.isabs(target):
            raise ProtectedDeviceError(target, "must be a device name (sda) or an absolute path")
        path = target
    else:
        path = os.path.join(os.fspath(dev_root), target)
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ProtectedDeviceError(target, f"cannot stat {path}: {exc.strerror}") from exc
    if not stat.S_ISBLK(info.st_mode):
        raise ProtectedDeviceError(target, f"{path} is not a block device")
    devnum = (os.major(info.st_rdev), os.minor(info.st_rdev))
    sysfs = under(sys_root, f"/sys/dev/block/{devnum[0]}:{devnum[1]}")
    if not os.path.isdir(sysfs):
        raise ProtectedDeviceError(
            target, f"no sysfs entry for block device {devnum[0]}:{devnum[1]}"
        )
    sysfs = os.path.realpath(sysfs)
    name = os.path.basename(sysfs)
    if read_flag(os.path.join(sysfs, "ro")):
        raise ProtectedDeviceError(target, f"{name} is read-only")
    _check_not_in_use(target, name, sysfs, devnum, sys_root)
    return BlockTarget(target=target, path=path, name=name, devnum=devnum)


def _check_not_in_use(
    target: str, name: str, sysfs: str, devnum: DevNum, sys_root: Path | str
) -> None:
    family = {devnum: name}
    for part in list_dir(sysfs):
        number = _devnum(os.path.join(sysfs, part))
        if number is not None and os.path.exists(os.path.join(sysfs, part, "partition")):
            family[number] = part
    holders = _holders(sysfs, sys_root)
    for part in family.values():
        if part != name:
            holders.update(_holders(os.path.join(sysfs, part), sys_root))
    root = os.stat(os.fspath(sys_root)).st_dev
    root_devnum = (os.major(root), os.minor(root))
    mounts = mounted_devices(sys_root)
    for number, member in family.items():
        what = name if member == name else f"its partition {member}"
        if number == root_devnum or mounts.get(number) == "/":
            raise ProtectedDeviceError(target, f"{what} holds the root filesystem")
        if mounts.get(number) == _SWAP:
            raise ProtectedDeviceError(target, f"{what} is in use as swap")
        if number in mounts:
            raise ProtectedDeviceError(target, f"{what} is mounted at {mounts[number]}")
    if holders:
        names = ", ".join(sorted(holders))
        raise ProtectedDeviceError(
            target, f"{name} is in use by {names} (device-mapper, RAID or LVM)"
        )


def _devnum(path: str) -> DevNum | None:
    text = read_str(os.path.join(path, "dev"))
    if not text or ":" not in text:
        return None
    major, _, minor = text.partition(":")
    try:
        return (int(major), int(minor))
    except ValueError:
        return None


def _holders(sysfs: str, sys_root: Path | str) -> set[str]:
    """Everything stacked on this device, transitively (dm on md on a partition…)."""
    found: set[str] = set()
    pending = [sysfs]
    while pending:
        for holder in list_dir(os.path.join(pending.pop(), "holders")):
            if holder not in found:
                found.add(holder)
                pending.append(under(sys_root, f"/sys/class/block/{holder}"))
    return found


def mounted_devices(sys_root: Path | str = "/") -> dict[DevNum, str]:
    """Block device numbers in use as a filesystem or swap, mapped to where."""
    used: dict[DevNum, str] = {}
    for line in (read_str(under(sys_root, "/proc/self/mountinfo")) or "").splitlines():
        # id parent major:minor root mountpoint options... - fstype source superoptions
        fields = line.split()
        if len(fields) < 5 or "-" not in fields:
            continue
        mountpoint = _unescape(fields[4])
        major, _, minor = fields[2].partition(":")
        if major.isdigit() and minor.isdigit() and int(major) != 0:
            used.setdefault((int(major), int(minor)), mountpoint)
        tail = fields[fields.index("-") + 1 :]
        if len(tail) >= 2:
            _add_by_path(used, _unescape(tail[1]), mountpoint)
    swaps = (read_str(under(sys_root, "/proc/swaps")) or "").splitlines()[1:]
    for line in swaps:
        if line.split():
            _add_by_path(used, _unescape(line.split()[0]), _SWAP)
    return used


def _add_by_path(used: dict[DevNum, str], source: str, where: str) -> None:
    # btrfs and others report an anonymous st_dev, so the source device itself is checked too.
    if not source.startswith("/"):
        return
    try:
        info = os.stat(source)
    except OSError:
        return
    if stat.S_ISBLK(info.st_mode):
        used.setdefault((os.major(info.st_rdev), os.minor(info.st_rdev)), where)


def _unescape(text: str) -> str:
    """The kernel writes space, tab, newline and backslash in mount paths as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        text = text.replace(code, char)
    return text
