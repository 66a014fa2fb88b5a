"""Real loop devices on sparse files: attach with losetup, always detach."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from tests.conftest import service_missing

MIB = 1024 * 1024


def fill_random(path: Path, size: int) -> None:
    with path.open("wb") as handle:
        for _ in range(size // MIB):
            handle.write(os.urandom(MIB))


@contextmanager
def _attach(image: Path, *extra: str) -> Iterator[str]:
    if os.geteuid() != 0:
        service_missing("attaching loop devices needs root")
    if shutil.which("losetup") is None:
        service_missing("losetup (util-linux) is not installed")
    result = subprocess.run(
        ["losetup", "-f", "--show", *extra, str(image)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        service_missing(f"losetup could not attach a loop device: {result.stderr.strip()}")
    device = result.stdout.strip()
    try:
        yield device
    finally:
        subprocess.run(["losetup", "-d", device], capture_output=True, check=False)


Attach = Callable[..., str]


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[Attach]:
    """``attach(size=64 MiB, random=True, read_only=False, partscan=False) -> /dev/loopN``."""
    with ExitStack() as stack:
        count = 0

        def attach(
            size: int = 64 * MIB,
            *,
            random: bool = True,
            read_only: bool = False,
            partscan: bool = False,
        ) -> str:
            nonlocal count
            image = tmp_path / f"disk{count}.img"
            count += 1
            if random:
                fill_random(image, size)
            else:
                with image.open("wb") as handle:
                    handle.truncate(size)
            extra = (["-r"] if read_only else []) + (["-P"] if partscan else [])
            return stack.enter_context(_attach(image, *extra))

        yield attach


def backing_file(device: str) -> Path:
    name = os.path.basename(device)
    return Path(Path(f"/sys/block/{name}/loop/backing_file").read_text().strip())


@contextmanager
def mounted(device: str, where: Path, *options: str) -> Iterator[Path]:
    if shutil.which("mkfs.ext4") is None:
        service_missing("mkfs.ext4 (e2fsprogs) is not installed")
    where.mkdir(exist_ok=True)
    result = subprocess.run(["mount", *options, device, str(where)], capture_output=True, text=True)
    if result.returncode != 0:
        service_missing(f"cannot mount {device} here: {result.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], capture_output=True, check=False)


def wait_for_node(path: str, sysfs_entry: Path, timeout: float = 10.0) -> None:
    """Wait until the kernel's partition ``sysfs_entry`` has its device node at ``path``.

    The kernel creates the partition synchronously during the rescan; the node in
    /dev comes from devtmpfs and, where udev runs, is then reworked by udev. So:
    ``udevadm settle`` when udev is there, then poll the node against a deadline.
    A node that never comes is a failure, not a skip: the partition exists.
    """
    if shutil.which("udevadm") is not None:
        subprocess.run(
            ["udevadm", "settle", f"--timeout={int(timeout)}"], capture_output=True, check=False
        )
    end = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > end:
            raise AssertionError(
                f"the kernel made partition {sysfs_entry.name} ({sysfs_entry}) but its node "
                f"{path} did not appear within {timeout} s"
            )
        time.sleep(0.02)  # polling another actor's (devtmpfs/udev) state, with a deadline
