"""An OpenStack config drive on the target disk: a ``config-2`` ISO 9660 partition.

cloud-init (and Ironic's agent) look for a block device labelled ``config-2``
holding ``openstack/latest/meta_data.json``, ``user_data`` and
``network_data.json``. The ISO is built with ``genisoimage`` and written just
past the image's last partition (1 MiB aligned); a new MBR partition entry
points at it, or on a GPT disk a new GPT entry named ``config-2`` (:mod:`.gpt`:
both headers and entry arrays rewritten, the backup moved to the disk's end).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwfleet.agent.imaging import gpt
from hwfleet.errors import DeviceError

SECTOR = 512
ALIGN = 2048  # sectors: 1 MiB
MBR_ENTRIES = 446
GPT_PROTECTIVE = 0xEE
LINUX = 0x83


class ConfigDriveError(DeviceError):
    """The config drive cannot be built or placed (no room, no free slot, GPT)."""


@dataclass(frozen=True)
class Partition:
    number: int
    kind: int
    start: int  # sectors
    sectors: int
    bootable: bool


def read_mbr(disk: str) -> list[Partition]:
    with open(disk, "rb") as handle:
        mbr = handle.read(SECTOR)
    if len(mbr) < SECTOR or mbr[510:512] != b"\x55\xaa":
        raise ConfigDriveError("the image has no partition table (no MBR signature)")
    found = []
    for index in range(4):
        entry = mbr[MBR_ENTRIES + 16 * index : MBR_ENTRIES + 16 * (index + 1)]
        kind = entry[4]
        start = int.from_bytes(entry[8:12], "little")
        sectors = int.from_bytes(entry[12:16], "little")
        if kind and sectors:
            found.append(Partition(index + 1, kind, start, sectors, entry[0] == 0x80))
    return found


def is_gpt(disk: str) -> bool:
    with open(disk, "rb") as handle:
        mbr = handle.read(SECTOR)
    return len(mbr) == SECTOR and mbr[MBR_ENTRIES + 4] == GPT_PROTECTIVE


def read_partitions(disk: str) -> list[Partition]:
    """The disk's partitions from its MBR or its GPT (GPT types mapped to MBR codes)."""
    parts = read_mbr(disk)
    if not any(p.kind == GPT_PROTECTIVE for p in parts):
        return parts
    fd = os.open(disk, os.O_RDONLY | os.O_CLOEXEC)
    try:
        entries = gpt.read_gpt(fd).used
    except gpt.GptError as exc:
        raise ConfigDriveError(str(exc)) from None
    finally:
        os.close(fd)
    return [
        Partition(
            e.number,
            gpt.MBR_KIND.get(e.type, 0),
            e.first,
            e.last - e.first + 1,
            bool(e.attributes & gpt.LEGACY_BOOTABLE),
        )
        for e in entries
    ]


def build_iso(configdrive: dict[str, Any], workdir: Path) -> Path:
    """``configdrive`` (meta_data, user_data?, network_data?) as a ``config-2`` ISO."""
    meta = configdrive.get("meta_data")
    if not isinstance(meta, dict):
        raise ConfigDriveError("configdrive.meta_data must be an object")
    tree = workdir / "tree" / "openstack" / "latest"
    tree.mkdir(parents=True)
    (tree / "meta_data.json").write_text(json.dumps(meta), encoding="utf-8")
    user_data = configdrive.get("user_data")
    if user_data is not None:
        (tree / "user_data").write_text(str(user_data), encoding="utf-8")
    network = configdrive.get("network_data")
    if network is not None:
        (tree / "network_data.json").write_text(json.dumps(network), encoding="utf-8")
    iso = workdir / "config-2.iso"
    command = ["genisoimage", "-quiet", "-V", "config-2", "-J", "-R", "-o", str(iso)]
    try:
        done = subprocess.run(
            [*command, str(workdir / "tree")], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise ConfigDriveError("building a config drive needs genisoimage") from None
    if done.returncode != 0:
        raise ConfigDriveError(f"genisoimage failed: {done.stderr.strip()[:300]}")
    return iso


def write_config_drive(disk: str, configdrive: dict[str, Any]) -> dict[str, Any]:
    """Build the ISO and add it to ``disk`` as a new partition; where it went."""
    parts = read_partitions(disk)
    table = "gpt" if is_gpt(disk) else "mbr"
    used = {p.number for p in parts}
    free_slots = [n for n in range(1, 5) if n not in used]
    if table == "mbr" and not free_slots:
        raise ConfigDriveError("the image's MBR has no free partition slot for the config drive")
    end = max((p.start + p.sectors for p in parts), default=ALIGN)
    start = -(-end // ALIGN) * ALIGN
    with tempfile.TemporaryDirectory(prefix="hwfleet-configdrive-") as tmp:
        iso = build_iso(configdrive, Path(tmp))
        data = iso.read_bytes()
        sectors = -(-len(data) // SECTOR)
        fd = os.open(disk, os.O_RDWR | os.O_CLOEXEC)
        try:
            if table == "gpt":
                number = _add_gpt_entry(fd, start, sectors)
            else:
                number = free_slots[0]
                _check_room(fd, start, sectors)
                entry = bytes([0, 0, 0, 0, LINUX, 0, 0, 0])
                entry += start.to_bytes(4, "little") + sectors.to_bytes(4, "little")
                os.pwrite(fd, entry, MBR_ENTRIES + 16 * (number - 1))
            os.pwrite(fd, data.ljust(sectors * SECTOR, b"\0"), start * SECTOR)
            os.fsync(fd)
        finally:
            os.close(fd)
    return {"partition": number, "table": table, "start": start * SECTOR, "bytes": len(data)}


def _check_room(fd: int, start: int, sectors: int) -> None:
    size = os.lseek(fd, 0, os.SEEK_END) // SECTOR
    if start + sectors > size:
        raise ConfigDriveError(
            f"no room for the config drive: it needs {sectors} sectors from {start}, "
            f"the disk has {size}"
        )


def _add_gpt_entry(fd: int, start: int, sectors: int) -> int:
    try:
        return gpt.add_partition(fd, gpt.read_gpt(fd), start, sectors, "config-2")
    except gpt.GptError as exc:
        raise ConfigDriveError(str(exc)) from None
