"""On UEFI machines, make the written image's boot loader the firmware's first boot entry.

A BIOS machine boots the image's own MBR boot code; nothing to do. A UEFI machine
boots what ``BootOrder`` names first, so after the image is written the agent finds
the boot loader on the image's EFI system partition (mounted read-only) and creates a
``Boot####`` entry for it with ``efibootmgr``, which also puts it first. The entry
is read back (``efibootmgr`` prints the variables after the change) and the step
fails unless the new entry really is first. Entries this agent made for an earlier
image are removed first: re-imaging a machine a hundred times must not leave a
hundred entries in its NVRAM, which is small and on some firmware fills up.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hwfleet.agent.imaging.boot import BootPlan, mounted_partition
from hwfleet.agent.imaging.configdrive import Partition, read_partitions

#: The label of the entries hwfleet creates (and removes again at the next re-image).
ENTRY_LABEL = "hwfleet image"
#: Loaders on an EFI system partition, most specific first: shim (it carries the
#: distribution's Secure Boot signature), then grub, then the removable-media path
#: every bootable ESP has. Matched case-insensitively, as FAT names are.
EFI_LOADERS = ("efi/*/shimx64.efi", "efi/*/grubx64.efi", "efi/boot/bootx64.efi")
ESP_KIND = 0xEF
_ENTRY = re.compile(r"^Boot([0-9A-Fa-f]{4})(\*?)\s+(.*)$")


@dataclass(frozen=True)
class BootVariables:
    """What ``efibootmgr`` prints: the boot order and each entry's label."""

    order: list[str]
    labels: dict[str, str]

    def numbers_labelled(self, label: str) -> list[str]:
        return [number for number, text in self.labels.items() if text == label]


def parse_efibootmgr(text: str) -> BootVariables:
    """``efibootmgr``'s listing: ``BootOrder: 0004,0001`` and ``Boot0004* label<TAB>path``."""
    order: list[str] = []
    labels: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("BootOrder:"):
            order = [n.strip().upper() for n in line.partition(":")[2].split(",") if n.strip()]
            continue
        match = _ENTRY.match(line)
        if match:
            # Before efibootmgr 17 the path followed only with -v; since, after a tab.
            labels[match[1].upper()] = match[3].split("\t")[0].strip()
    return BootVariables(order, labels)


def find_loader(root: Path) -> str | None:
    """The ESP's preferred loader as firmware names it (``\\EFI\\BOOT\\BOOTX64.EFI``)."""
    found: list[str] = []
    for path in root.glob("*/*/*"):  # EFI/<vendor>/<file>: the depth every loader sits at
        if path.is_file():
            found.append(path.relative_to(root).as_posix())
    for pattern in EFI_LOADERS:
        for rel in sorted(found):
            if fnmatch.fnmatchcase(rel.lower(), pattern):
                return "\\" + rel.replace("/", "\\")
    return None


def uefi_default(disk: str, plan: BootPlan, *, firmware: str = "/sys/firmware/efi") -> None:
    """Put an entry for the image's boot loader first in the firmware's boot order."""
    if not os.path.isdir(firmware):
        plan.steps.append("BIOS: the image's own MBR boot code is the disk's boot loader")
        return
    esp = [p for p in read_partitions(disk) if p.kind == ESP_KIND]
    if not esp:
        plan.steps.append("UEFI: the image has no EFI system partition; boot order unchanged")
        return
    if shutil.which("efibootmgr") is None:
        plan.steps.append("UEFI: efibootmgr is not installed; boot order unchanged")
        return
    loader = _loader_on(disk, esp[0], plan)
    if loader is None:
        return
    try:
        before = parse_efibootmgr(_efibootmgr())
        for number in before.numbers_labelled(ENTRY_LABEL):
            _efibootmgr("-b", number, "-B")
        create = ["-c", "-d", disk, "-p", str(esp[0].number), "-L", ENTRY_LABEL, "-l", loader]
        after = parse_efibootmgr(_efibootmgr(*create))
    except OSError as exc:
        plan.steps.append(f"UEFI: {exc}")
        return
    ours = after.numbers_labelled(ENTRY_LABEL)
    if not ours or not after.order or after.order[0] not in ours:
        plan.steps.append(
            f"UEFI: efibootmgr did not put '{ENTRY_LABEL}' first "
            f"(BootOrder {','.join(after.order) or 'empty'})"
        )
        return
    plan.steps.append(
        f"UEFI: Boot{after.order[0]} '{ENTRY_LABEL}' ({loader} on partition "
        f"{esp[0].number}) is first in BootOrder {','.join(after.order)}"
    )


def _loader_on(disk: str, esp: Partition, plan: BootPlan) -> str | None:
    try:
        with mounted_partition(disk, esp) as root:
            loader = find_loader(root)
    except OSError as exc:
        plan.steps.append(f"UEFI: EFI system partition {esp.number}: {exc}; boot order unchanged")
        return None
    if loader is None:
        plan.steps.append(
            f"UEFI: no boot loader on EFI system partition {esp.number}; boot order unchanged"
        )
    return loader


def _efibootmgr(*args: str) -> str:
    done = subprocess.run(
        ["efibootmgr", *args], capture_output=True, text=True, check=False, timeout=60
    )
    if done.returncode != 0:
        command = " ".join(["efibootmgr", *args])
        raise OSError(f"{command} failed: {done.stderr.strip()[:200] or done.returncode}")
    return done.stdout
