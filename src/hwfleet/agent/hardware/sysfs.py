"""The generic manager: everything from sysfs and procfs, no subprocess anywhere."""

from __future__ import annotations

import os
from pathlib import Path

from hwfleet.agent.hardware import cpu, disks, dmi, linkinfo, memory, net, pci
from hwfleet.agent.hardware._sysfs import read_str, under
from hwfleet.agent.hardware.base import (
    HardwareManager,
    HardwareSupport,
    IncompatibleHardwareMethodError,
)
from hwfleet.protocol.inventory import Cpu, Disk, Dmi, Memory, Nic, NicReport, PciDevice


class SysfsHardwareManager(HardwareManager):
    """Reads the machine it runs on (or a fake tree under ``root``, for tests)."""

    name = "sysfs"

    def __init__(self, root: Path | str = "/") -> None:
        self.root = Path(root)

    def evaluate(self) -> HardwareSupport:
        if os.path.isdir(under(self.root, "/sys")):
            return HardwareSupport.GENERIC
        return HardwareSupport.NONE

    def list_pci(self) -> list[PciDevice]:
        return pci.list_pci(self.root)

    def list_nics(self) -> list[Nic]:
        return self.nic_report().interfaces

    def nic_report(self) -> NicReport:
        # Addresses, kinds and permanent MACs come from the running kernel: a fake tree has none.
        if os.fspath(self.root) != "/":
            return net.scan_nics(self.root)
        return net.scan_nics(
            self.root,
            net.ipv4_addresses(),
            kinds=linkinfo.link_kinds(),
            permanent_mac=linkinfo.permanent_mac,
        )

    def get_cpu(self) -> Cpu:
        return cpu.get_cpu(self.root)

    def get_memory(self) -> Memory:
        return memory.get_memory(self.root)

    def list_disks(self) -> list[Disk]:
        return disks.list_disks(self.root)

    def get_dmi(self) -> Dmi:
        found = dmi.get_dmi(self.root)
        if found is None:
            raise IncompatibleHardwareMethodError("no /sys/class/dmi/id on this machine")
        return found

    def hostname(self) -> str:
        name = read_str(under(self.root, "/proc/sys/kernel/hostname"))
        if name is None and os.fspath(self.root) == "/":
            name = os.uname().nodename
        return name or ""
