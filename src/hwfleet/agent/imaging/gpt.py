"""GUID partition tables: read the entries, add one (the config drive), both headers rewritten.

Most cloud images are GPT. An image written to a disk larger than itself has its
backup header at the *image's* end, in the middle of the disk; adding a partition
is then what ``sgdisk -e`` plus ``sgdisk -n`` would do: the backup entries and
header move to the disk's last sectors, the last usable sector grows to match, the
new entry goes into the first free slot, and every CRC32 (entry array, both
headers) is recomputed. The protective MBR's size field follows the disk. Written
here rather than with ``sgdisk`` so the agent's ramdisk needs no extra tool.
"""

from __future__ import annotations

import os
import struct
import uuid
import zlib
from dataclasses import dataclass

from hwfleet.errors import DeviceError

SECTOR = 512
SIGNATURE = b"EFI PART"
#: Header fields from the signature to the entry array's CRC (UEFI spec 5.3.2): 0 signature,
#: 2 header size, 3 header CRC, 5 this LBA, 6 other header's LBA, 8 last usable LBA,
#: 10 entry array LBA, 11 entry count, 12 entry size, 13 entry array CRC.
_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")
_ENTRY = struct.Struct("<16s16sQQQ72s")
LINUX_DATA = uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4")
#: GPT type -> the MBR type code the rest of the imaging code speaks.
MBR_KIND = {
    LINUX_DATA: 0x83,
    uuid.UUID("4f68bce3-e8cd-4db1-96e7-fbcaf984b709"): 0x83,  # Linux root (x86-64)
    uuid.UUID("bc13c2ff-59e6-4262-a352-b275fd6f7172"): 0x83,  # Linux /boot (XBOOTLDR)
    uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b"): 0xEF,  # EFI system partition
    uuid.UUID("ebd0a0a2-b9e5-4433-87c0-68b6b72699c7"): 0x0C,  # basic data (FAT)
}
LEGACY_BOOTABLE = 1 << 2


class GptError(DeviceError):
    """The GPT is unreadable or has no room for another partition."""


@dataclass(frozen=True)
class GptEntry:
    number: int
    type: uuid.UUID
    first: int  # LBA
    last: int  # LBA, inclusive
    attributes: int
    name: str


@dataclass
class Gpt:
    header: list[int | bytes]
    entries: bytearray
    disk_sectors: int

    @property
    def used(self) -> list[GptEntry]:
        found = []
        size = int(self.header[12])
        for index in range(int(self.header[11])):
            raw = self.entries[index * size : index * size + _ENTRY.size]
            kind, _unique, first, last, attributes, name = _ENTRY.unpack(raw)
            if kind != bytes(16):
                label = name.decode("utf-16-le", "replace").rstrip("\0")
                found.append(
                    GptEntry(index + 1, uuid.UUID(bytes_le=kind), first, last, attributes, label)
                )
        return found


def read_gpt(fd: int) -> Gpt:
    """The primary header and entry array of the disk open as ``fd``."""
    disk_sectors = os.lseek(fd, 0, os.SEEK_END) // SECTOR
    raw = os.pread(fd, SECTOR, SECTOR)
    if len(raw) < _HEADER.size or not raw.startswith(SIGNATURE):
        raise GptError("the protective MBR announces a GPT but LBA 1 holds no GPT header")
    header: list[int | bytes] = list(_HEADER.unpack(raw[: _HEADER.size]))
    header_size = int(header[2])
    check = bytearray(raw[:header_size])
    check[16:20] = bytes(4)
    if zlib.crc32(check) != header[3]:
        raise GptError("the primary GPT header's CRC32 is wrong")
    count, size = int(header[11]), int(header[12])
    if not 0 < count <= 1024 or size < _ENTRY.size or size % 8:
        raise GptError(f"unusable GPT entry array ({count} entries of {size} bytes)")
    entries = bytearray(os.pread(fd, count * size, int(header[10]) * SECTOR))
    if zlib.crc32(entries) != header[13]:
        raise GptError("the GPT partition entry array's CRC32 is wrong")
    return Gpt(header, entries, disk_sectors)


def add_partition(fd: int, gpt: Gpt, first: int, sectors: int, name: str) -> int:
    """Add a Linux-data partition ``first``..``first + sectors - 1``; its number.

    The backup table moves to the disk's end first, so the new partition may use the
    space past the image.
    """
    count, size = int(gpt.header[11]), int(gpt.header[12])
    array_sectors = -(-count * size // SECTOR)
    last_lba = gpt.disk_sectors - 1
    last_usable = last_lba - array_sectors - 1
    if first + sectors - 1 > last_usable:
        raise GptError(
            f"no room for the config drive: it needs sectors {first} to {first + sectors - 1}, "
            f"the disk's last usable sector is {last_usable}"
        )
    taken = {e.number for e in gpt.used}
    free = next((n for n in range(1, count + 1) if n not in taken), None)
    if free is None:
        raise GptError("the image's GPT has no free partition entry for the config drive")
    entry = _ENTRY.pack(
        LINUX_DATA.bytes_le,
        uuid.uuid4().bytes_le,
        first,
        first + sectors - 1,
        0,
        name.encode("utf-16-le").ljust(72, b"\0"),
    )
    gpt.entries[(free - 1) * size : (free - 1) * size + _ENTRY.size] = entry
    entries_crc = zlib.crc32(gpt.entries)
    backup_array = last_lba - array_sectors
    primary = _header(gpt.header, 1, last_lba, last_usable, int(gpt.header[10]), entries_crc)
    backup = _header(gpt.header, last_lba, 1, last_usable, backup_array, entries_crc)
    os.pwrite(fd, bytes(gpt.entries), backup_array * SECTOR)
    os.pwrite(fd, backup, last_lba * SECTOR)
    os.pwrite(fd, bytes(gpt.entries), int(gpt.header[10]) * SECTOR)
    os.pwrite(fd, primary, SECTOR)
    _protective_mbr_size(fd, gpt.disk_sectors)
    return free


def _header(
    fields: list[int | bytes], mine: int, other: int, last_usable: int, array: int, crc: int
) -> bytes:
    values = list(fields)
    values[3], values[5], values[6], values[8] = 0, mine, other, last_usable
    values[10], values[13] = array, crc
    header_size = int(values[2])
    raw = bytearray(_HEADER.pack(*values).ljust(header_size, b"\0"))
    raw[16:20] = struct.pack("<I", zlib.crc32(raw))
    return bytes(raw).ljust(SECTOR, b"\0")


def _protective_mbr_size(fd: int, disk_sectors: int) -> None:
    """Entry 1 of the protective MBR covers the disk (capped at 2^32 - 1 sectors)."""
    entry = bytearray(os.pread(fd, 16, 446))
    if entry[4] == 0xEE:
        entry[12:16] = struct.pack("<I", min(disk_sectors - 1, 0xFFFFFFFF))
        os.pwrite(fd, bytes(entry), 446)
