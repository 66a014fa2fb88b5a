"""Quality control (``decom.qc``): check an inventory against the chassis specification.

Only the requirements the spec names are checked; each becomes one entry in
the report with what was expected and what was found. Unknown spec fields are
rejected rather than ignored, because a misspelt requirement silently skipped
would let a wrong chassis pass.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

from hwfleet.protocol.inventory import Inventory
from hwfleet.protocol.mac import is_mac, normalize_mac

_MIB = 1024 * 1024
_PCI_ID = re.compile(r"^(0x)?([0-9a-fA-F]{1,4}):(0x)?([0-9a-fA-F]{1,4})$")

NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class QcSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What the chassis must have; every field is optional."""

    cpu_model: str | None = None
    min_cpu_count: NonNegative | None = None
    min_memory_mb: NonNegative | None = None
    disk_count: NonNegative | None = None
    min_disk_bytes: NonNegative | None = None
    nic_count: NonNegative | None = None
    pci_ids: list[str] | None = None
    macs: list[str] | None = None

    def __post_init__(self) -> None:
        for value in self.pci_ids or []:
            if not _PCI_ID.match(value):
                raise ValueError(f"pci_ids: {value!r} is not vendor:device (e.g. 8086:1533)")
        for value in self.macs or []:
            if not is_mac(value):
                raise ValueError(f"macs: {value!r} is not a MAC address")


class QcCheck(msgspec.Struct, kw_only=True):
    name: str
    expected: Any
    actual: Any
    passed: bool


class QcReport(msgspec.Struct, kw_only=True):
    passed: bool
    checks: list[QcCheck]


def pci_id(vendor: str, device: str) -> str:
    """``0x8086``, ``0x1533`` → ``8086:1533``: the form specs and lspci use."""
    return f"{_hex4(vendor)}:{_hex4(device)}"


def _hex4(value: str) -> str:
    return value.lower().removeprefix("0x").rjust(4, "0")


def _normalize_pci_id(value: str) -> str:
    found = _PCI_ID.match(value)
    return pci_id(found.group(2), found.group(4)) if found else value.lower()


def memory_mb(inventory: Inventory) -> int:
    """Installed memory when known (DMI), else what the kernel sees, which is a little less."""
    return inventory.memory.physical_mb or inventory.memory.total_bytes // _MIB


def run_qc(spec: QcSpec, inventory: Inventory) -> QcReport:
    """Check ``inventory`` against ``spec``; passed only if every named requirement holds."""
    checks: list[QcCheck] = []

    def check(name: str, expected: Any, actual: Any, passed: bool) -> None:
        checks.append(QcCheck(name=name, expected=expected, actual=actual, passed=passed))

    cpu = inventory.cpu
    if spec.cpu_model is not None:
        ok = spec.cpu_model.lower() in cpu.model.lower()
        check("cpu_model", spec.cpu_model, cpu.model, ok)
    if spec.min_cpu_count is not None:
        check("min_cpu_count", spec.min_cpu_count, cpu.count, cpu.count >= spec.min_cpu_count)
    if spec.min_memory_mb is not None:
        mb = memory_mb(inventory)
        check("min_memory_mb", spec.min_memory_mb, mb, mb >= spec.min_memory_mb)
    disks = inventory.disks
    if spec.disk_count is not None:
        check("disk_count", spec.disk_count, len(disks), len(disks) == spec.disk_count)
    if spec.min_disk_bytes is not None:
        smallest = min((disk.size for disk in disks), default=0)
        ok = bool(disks) and smallest >= spec.min_disk_bytes
        check("min_disk_bytes", spec.min_disk_bytes, smallest, ok)
    if spec.nic_count is not None:
        # Physical NICs only: bridges, veths and other virtual interfaces have no PCI address.
        physical = [nic.name for nic in inventory.interfaces if nic.pci]
        check("nic_count", spec.nic_count, len(physical), len(physical) == spec.nic_count)
    if spec.pci_ids is not None:
        present = {pci_id(function.vendor, function.device) for function in inventory.pci}
        wanted = [_normalize_pci_id(value) for value in spec.pci_ids]
        missing = [value for value in wanted if value not in present]
        check("pci_ids", wanted, sorted(present & set(wanted)), not missing)
    if spec.macs is not None:
        present = {normalize_mac(nic.mac) for nic in inventory.interfaces if is_mac(nic.mac)}
        wanted = [normalize_mac(value) for value in spec.macs]
        missing = [value for value in wanted if value not in present]
        check("macs", wanted, sorted(present & set(wanted)), not missing)
    return QcReport(passed=all(item.passed for item in checks), checks=checks)
