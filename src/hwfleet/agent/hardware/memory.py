"""Memory: ``MemTotal`` from ``/proc/meminfo``; installed size from DMI or memory blocks.

``MemTotal`` is what the kernel can use (less than what is installed). The
installed size comes from the SMBIOS type-17 records the kernel exports under
``/sys/firmware/dmi/entries`` (what ``dmidecode`` reads, without running it),
else from the count of ``/sys/devices/system/memory`` blocks.
"""

from __future__ import annotations

import os
from pathlib import Path

from hwfleet.agent.hardware._sysfs import list_dir, read_bytes, read_int, read_str, under
from hwfleet.protocol.inventory import Memory

_MIB = 1024 * 1024


def get_memory(root: Path | str = "/") -> Memory:
    return Memory(total_bytes=_mem_total(root), physical_mb=physical_mb(root))


def _mem_total(root: Path | str) -> int:
    text = read_str(under(root, "/proc/meminfo")) or ""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            fields = line.split()
            try:
                value = int(fields[1])
            except (IndexError, ValueError):
                return 0
            unit = fields[2].lower() if len(fields) > 2 else "b"
            return value * 1024 if unit == "kb" else value
    return 0


def physical_mb(root: Path | str = "/") -> int | None:
    """Installed memory in MiB, or None when neither source is available."""
    return _dmi_memory_mb(root) or _memory_blocks_mb(root)


def _dmi_memory_mb(root: Path | str) -> int | None:
    base = under(root, "/sys/firmware/dmi/entries")
    total = 0
    for entry in list_dir(base):
        if entry.startswith("17-"):
            total += dmi_memory_device_mb(read_bytes(os.path.join(base, entry, "raw")) or b"")
    return total or None


def dmi_memory_device_mb(raw: bytes) -> int:
    """The size of one SMBIOS Memory Device (type 17) record, in MiB; 0 for an empty slot."""
    if len(raw) < 0x0E or raw[0] != 17:
        return 0
    size = int.from_bytes(raw[0x0C:0x0E], "little")
    if size in (0, 0xFFFF):
        return 0
    if size == 0x7FFF:
        # Modules of 32 GiB and more carry their size in the Extended Size field.
        if raw[1] < 0x20 or len(raw) < 0x20:
            return 0
        return int.from_bytes(raw[0x1C:0x20], "little") & 0x7FFFFFFF
    # Bit 15 set means the size is in KiB rather than MiB.
    return (size & 0x7FFF) // 1024 if size & 0x8000 else size


def _memory_blocks_mb(root: Path | str) -> int | None:
    base = under(root, "/sys/devices/system/memory")
    block_size = read_int(os.path.join(base, "block_size_bytes"), 16)
    if not block_size:
        return None
    blocks = sum(1 for name in list_dir(base) if name.startswith("memory") and name[6:].isdigit())
    return (blocks * block_size) // _MIB or None
