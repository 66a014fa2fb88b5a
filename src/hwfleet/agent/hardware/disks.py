"""Block devices from ``/sys/block``: size, rotational, model, vendor, serial, WWN.

By default the list holds disks only: unattached loop devices, unconfigured
``zram``, ``ram`` disks and stacked devices (device-mapper, md: anything with
``slaves``) are left out, because QC counts disks and an erase must name real
ones. ``include_virtual=True`` lists everything.
"""

from __future__ import annotations

import os
from pathlib import Path

from hwfleet.agent.hardware._sysfs import (
    list_dir,
    read_bytes,
    read_flag,
    read_int,
    read_str,
    under,
)
from hwfleet.protocol.inventory import Disk

#: ``/sys/block/*/size`` counts 512-byte sectors whatever the logical block size.
SECTOR = 512


def list_disks(root: Path | str = "/", *, include_virtual: bool = False) -> list[Disk]:
    base = under(root, "/sys/block")
    disks = []
    for name in list_dir(base):
        path = os.path.join(base, name)
        size = (read_int(os.path.join(path, "size")) or 0) * SECTOR
        if not include_virtual and _is_virtual(path, name, size):
            continue
        disks.append(describe(path, name, size))
    return disks


def _is_virtual(path: str, name: str, size: int) -> bool:
    if name.startswith("loop"):
        return not os.path.exists(os.path.join(path, "loop", "backing_file"))
    if name.startswith("zram"):
        return size == 0
    if name.startswith("ram"):
        return True
    return bool(list_dir(os.path.join(path, "slaves")))


def describe(path: str, name: str, size: int) -> Disk:
    """One disk's identity from its sysfs directory."""
    device = os.path.join(path, "device")
    wwid = read_str(os.path.join(path, "wwid")) or read_str(os.path.join(device, "wwid"))
    return Disk(
        name=name,
        size=size,
        rotational=read_flag(os.path.join(path, "queue", "rotational")),
        model=read_str(os.path.join(device, "model")),
        vendor=read_str(os.path.join(device, "vendor")),
        serial=_serial(path, device) or wwid,
        wwn=wwn_from_wwid(wwid),
        removable=read_flag(os.path.join(path, "removable")),
        read_only=read_flag(os.path.join(path, "ro")),
    )


def _serial(path: str, device: str) -> str | None:
    # NVMe and ATA export device/serial, virtio-blk the block-level serial file, SCSI only
    # the Unit Serial Number VPD page (4-byte header, then the serial in ASCII).
    serial = read_str(os.path.join(device, "serial")) or read_str(os.path.join(path, "serial"))
    if serial:
        return serial
    page = read_bytes(os.path.join(device, "vpd_pg80"))
    if page and len(page) > 4:
        text = page[4:].decode("ascii", "replace").strip("\x00 \t\n")
        return text or None
    return None


def wwn_from_wwid(wwid: str | None) -> str | None:
    """``naa.5000c500a1b2c3d4`` / ``eui.…`` → ``0x5000c500a1b2c3d4`` (udev's ID_WWN form)."""
    if not wwid:
        return None
    scheme, sep, value = wwid.partition(".")
    if sep and scheme in ("naa", "eui") and value:
        return "0x" + value.lower()
    return None
