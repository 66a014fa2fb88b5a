"""Hardware inventory shapes: what hardware managers report and ``inventory`` / scans carry.

Field names follow sysfs and ironic-python-agent where they overlap, so an
operator who knows either recognises them. Simulation profiles (DESIGN §8)
use the same shapes for ``interfaces``, ``pci``, ``cpus`` and ``disks``.
"""

from __future__ import annotations

import msgspec


class PciDevice(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One PCI function, e.g. ``0000:04:00.0`` vendor ``0x8086`` device ``0x1533``."""

    address: str
    vendor: str
    device: str
    class_: str = msgspec.field(name="class")
    driver: str | None = None
    subsystem_vendor: str | None = None
    subsystem_device: str | None = None


class Nic(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A network interface; ``pci`` is its PCI address when it has one."""

    name: str
    mac: str
    pci: str | None = None
    driver: str | None = None
    speed_mbps: int | None = None
    carrier: bool | None = None
    mtu: int | None = None
    ipv4: list[str] = msgspec.field(default_factory=list)


class ExcludedNic(msgspec.Struct, kw_only=True):
    """An interface left out of the inventory and the scan, and why (``bridge``, ``veth``…)."""

    name: str
    reason: str


class NicReport(msgspec.Struct, kw_only=True):
    """The physical NICs a manager found and the interfaces it left out."""

    interfaces: list[Nic] = msgspec.field(default_factory=list)
    excluded: list[ExcludedNic] = msgspec.field(default_factory=list)


class Cpu(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The processors as a whole (IPA's shape): model, counts, frequency, flags."""

    model: str = ""
    architecture: str = ""
    count: int = 0
    cores: int = 0
    sockets: int = 0
    frequency_mhz: float | None = None
    flags: list[str] = msgspec.field(default_factory=list)


class Memory(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``total_bytes`` as the kernel sees it; ``physical_mb`` from DMI when known."""

    total_bytes: int = 0
    physical_mb: int | None = None


class Disk(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A block device: name (``sda``), size in bytes, and what identifies it."""

    name: str
    size: int = 0
    rotational: bool | None = None
    model: str | None = None
    vendor: str | None = None
    serial: str | None = None
    wwn: str | None = None
    removable: bool | None = None
    read_only: bool | None = None


class Dmi(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``/sys/class/dmi/id`` fields that identify the chassis and firmware."""

    sys_vendor: str | None = None
    product_name: str | None = None
    product_serial: str | None = None
    product_uuid: str | None = None
    board_vendor: str | None = None
    board_name: str | None = None
    board_serial: str | None = None
    bios_vendor: str | None = None
    bios_version: str | None = None
    bios_date: str | None = None
    chassis_type: str | None = None


class Inventory(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Everything the hardware managers found."""

    hostname: str = ""
    pci: list[PciDevice] = msgspec.field(default_factory=list)
    interfaces: list[Nic] = msgspec.field(default_factory=list)
    #: Interfaces that are not physical NICs, named so an operator sees why they are missing.
    excluded_interfaces: list[ExcludedNic] = msgspec.field(default_factory=list)
    cpu: Cpu = msgspec.field(default_factory=Cpu)
    memory: Memory = msgspec.field(default_factory=Memory)
    disks: list[Disk] = msgspec.field(default_factory=list)
    dmi: Dmi | None = None


class ScanNic(msgspec.Struct):
    """A NIC as a scan reply carries it."""

    interface: str
    macaddr: str


class ScanParams(msgspec.Struct, forbid_unknown_fields=False):
    """The scan trigger: seed 000's ``{"operationid": N, "action": 1}`` (or ``"scan"``)."""

    operationid: int
    action: int | str = "scan"

    def is_scan(self) -> bool:
        """Only a start-scan action: 1 as the reference client reads it, or hwfleet's word."""
        return self.action == 1 or self.action == "scan"


class HwInfo(msgspec.Struct, kw_only=True):
    """A device's reply to a scan (seed 000 step 3), published on ``hwinfo_queue``.

    ``sn`` keeps the JSON type the device reported.
    """

    operationid: int
    sn: int | str
    uuid: str = ""
    macinfo: list[ScanNic] = msgspec.field(default_factory=list)
    pci: list[PciDevice] = msgspec.field(default_factory=list)
