"""Boot into the written image: find its kernel from grub, then kexec (else reboot).

The boot partition is the bootable one (MBR flag, GPT legacy-BIOS-bootable
bit; else each Linux partition in turn); it is mounted read-only (a loop
over its byte range), its grub configuration read — the ``default`` entry,
else the first — and the kernel, initrd and command line of that entry copied
out. With ``kexec-tools`` the
kernel is loaded (``kexec -l``) and started (``kexec -e``); without a kernel or
``kexec`` the machine reboots into the image's own boot loader, which the
image's MBR boot code already makes the disk's default (BIOS); on UEFI the
firmware's boot order is changed first (:mod:`.efi`).
"""

from __future__ import annotations

import contextlib
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwfleet.agent.imaging.configdrive import SECTOR, Partition, read_partitions

GRUB_CONFIGS = ("boot/grub/grub.cfg", "grub/grub.cfg", "boot/grub2/grub.cfg", "grub2/grub.cfg")
LINUX_KINDS = (0x83, 0x0C, 0x0B, 0xEF)
_DEFAULT = re.compile(r"^\s*set\s+default=[\"']?(\d+)[\"']?\s*$", re.MULTILINE)
_ENTRY = re.compile(r"^\s*menuentry\b[^{]*\{(.*?)^\s*\}", re.MULTILINE | re.DOTALL)


@dataclass
class BootEntry:
    kernel: str
    initrd: str | None
    cmdline: str


@dataclass
class BootPlan:
    """What ``run_image`` found and will do; reported in the task's result."""

    steps: list[str] = field(default_factory=list)
    action: str = "reboot"
    entry: BootEntry | None = None
    partition: int | None = None

    def to_json(self) -> dict[str, Any]:
        entry = None if self.entry is None else dict(self.entry.__dict__)
        return {
            "steps": self.steps,
            "action": self.action,
            "kernel": entry,
            "partition": self.partition,
        }


def parse_grub(text: str) -> BootEntry | None:
    """The default (else first) menu entry's ``linux``/``initrd`` lines."""
    entries = _ENTRY.findall(text)
    if not entries:
        return None
    default = _DEFAULT.search(text)
    index = int(default[1]) if default and int(default[1]) < len(entries) else 0
    kernel = initrd = None
    cmdline = ""
    for line in entries[index].splitlines():
        words = shlex.split(line, comments=True) if line.strip() else []
        if not words:
            continue
        if words[0] in ("linux", "linuxefi", "linux16") and len(words) > 1:
            kernel, cmdline = words[1], " ".join(words[2:])
        elif words[0] in ("initrd", "initrdefi", "initrd16") and len(words) > 1:
            initrd = words[1]
    return None if kernel is None else BootEntry(kernel, initrd, cmdline)


@contextlib.contextmanager
def mounted_partition(disk: str, part: Partition) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="hwfleet-boot-") as where:
        options = f"ro,loop,offset={part.start * SECTOR},sizelimit={part.sectors * SECTOR}"
        done = subprocess.run(
            ["mount", "-o", options, disk, where], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise OSError(f"cannot mount partition {part.number}: {done.stderr.strip()[:200]}")
        try:
            yield Path(where)
        finally:
            subprocess.run(["umount", where], capture_output=True, check=False)


def find_kernel(disk: str, plan: BootPlan, out: Path) -> tuple[Path, Path | None] | None:
    """Copy the image's default kernel (and initrd) into ``out``; None if none is found."""
    parts = [p for p in read_partitions(disk) if p.kind in LINUX_KINDS]
    parts.sort(key=lambda p: not p.bootable)
    for part in parts:
        try:
            with mounted_partition(disk, part) as root:
                for name in GRUB_CONFIGS:
                    config = root / name
                    if not config.is_file():
                        continue
                    entry = parse_grub(config.read_text(encoding="utf-8", errors="replace"))
                    plan.steps.append(f"read {name} on partition {part.number}")
                    if entry is None:
                        continue
                    kernel = _inside(root, entry.kernel)
                    initrd = _inside(root, entry.initrd) if entry.initrd else None
                    if kernel is None:
                        plan.steps.append(f"kernel {entry.kernel} not on partition {part.number}")
                        continue
                    shutil.copyfile(kernel, out / "kernel")
                    if initrd is not None:
                        shutil.copyfile(initrd, out / "initrd")
                    plan.entry, plan.partition = entry, part.number
                    return out / "kernel", (out / "initrd") if initrd is not None else None
        except OSError as exc:
            plan.steps.append(str(exc))
    return None


def _inside(root: Path, path: str) -> Path | None:
    """``path`` as grub names it, inside the mounted partition (never outside it)."""
    candidate = (root / path.lstrip("/")).resolve()
    if not candidate.is_relative_to(root.resolve()) or not candidate.is_file():
        return None
    return candidate


def kexec_load(kernel: Path, initrd: Path | None, cmdline: str) -> None:
    command = ["kexec", "-l", str(kernel), f"--append={cmdline}"]
    if initrd is not None:
        command.append(f"--initrd={initrd}")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise OSError(f"kexec -l failed: {done.stderr.strip()[:300]}")
