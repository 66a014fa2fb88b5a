"""PCI functions from ``/sys/bus/pci/devices``: address, ids, class and bound driver."""

from __future__ import annotations

import os
import re
from pathlib import Path

from hwfleet.agent.hardware._sysfs import link_name, list_dir, read_str, under
from hwfleet.protocol.inventory import PciDevice

#: ``0000:04:00.0``: domain, bus, device (slot) and function, as sysfs names them.
PCI_ADDRESS = re.compile(r"^[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-1][0-9a-fA-F]\.[0-7]$")


def list_pci(root: Path | str = "/") -> list[PciDevice]:
    """Every PCI function the kernel knows, sorted by address."""
    base = under(root, "/sys/bus/pci/devices")
    devices = []
    for address in list_dir(base):
        if not PCI_ADDRESS.match(address):
            continue
        path = os.path.join(base, address)
        vendor = read_str(os.path.join(path, "vendor"))
        device = read_str(os.path.join(path, "device"))
        if vendor is None or device is None:
            # A function being hot-removed can vanish between listdir and read.
            continue
        devices.append(
            PciDevice(
                address=address,
                vendor=vendor,
                device=device,
                class_=read_str(os.path.join(path, "class")) or "",
                driver=link_name(os.path.join(path, "driver")),
                subsystem_vendor=read_str(os.path.join(path, "subsystem_vendor")),
                subsystem_device=read_str(os.path.join(path, "subsystem_device")),
            )
        )
    return devices


def pci_address_of(device_link: str) -> str | None:
    """The PCI function a ``…/device`` symlink sits on, walking up through virtio and USB."""
    try:
        real = os.path.realpath(device_link, strict=True)
    except OSError:
        return None
    for part in reversed(real.split(os.sep)):
        if PCI_ADDRESS.match(part):
            return part
    return None
