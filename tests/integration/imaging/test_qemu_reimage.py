"""End to end in a qemu VM (TCG): the agent re-images the VM's disk and kexecs into the image.

Real parts only. A controller runs in this process on loopback (agent gateway and mTLS
image server); the VM reaches it through qemu's user networking, whose 10.0.2.2 is this
machine's loopback. The VM boots the Debian kernel and an initramfs holding the agent
(tests/integration/imaging/vm_build.py, cached), with two virtual disks: ``vda``, empty,
the target; ``vdb``, whose partition the VM's init mounts. The test then drives the agent
as an operator would, with ``hwfleet run``:

1. ``standby.prepare_image`` on ``/dev/vdb`` is refused (a mounted partition, the erase's
   own check, which loop devices on the CI machine cannot show);
2. ``standby.prepare_image`` writes the whole-disk image (raw.gz, decompressed in the VM)
   to ``/dev/vda`` and verifies it;
3. ``standby.run_image`` writes the config drive, finds the kernel through the image's
   grub.cfg (its default entry, not the first) and kexecs;
4. the image's kernel comes up on the serial console (its command line is the grub
   entry's) and its initramfs prints the config drive's ``meta_data`` uuid.

The first run builds the VM's files (a few minutes: a kernel .deb download, the agent's
tree); later runs reuse them. Under TCG on a shared 2-core machine the boot to enrolment
takes minutes, hence the deadline. Never touches a disk of this machine: the VM's disks
are files under the test's temporary directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import service_missing
from tests.integration.boot.pxe_vm import QEMU
from tests.integration.controller.conftest import (
    HWFLEET,
    cli_env,
    controller_settings,
    running_controller,
)
from tests.integration.imaging.conftest import add_image, image_port
from tests.integration.imaging.vm_build import IMAGE_UP, held_disk, vm_files

from hwfleet.controller.app import Controller

pytestmark = [pytest.mark.slow]

MIB = 1024 * 1024
#: Power-on to enrolment under TCG on a loaded machine is minutes (docs/boot.md: up to 6).
ENROL_DEADLINE = 900.0
#: One method under TCG: sha256 and gzip in an emulated CPU, twice over the image.
METHOD_DEADLINE = 600.0
KEXEC_DEADLINE = 300.0


class Console:
    """The VM's serial console (qemu's stdout), copied to a log; lines awaited by content."""

    def __init__(self, stream: asyncio.StreamReader, log: Path) -> None:
        self.lines: list[str] = []
        self.log = log
        self._changed = asyncio.Condition()
        self._ended = False
        self._task = asyncio.create_task(self._read(stream))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        with self.log.open("a", encoding="utf-8") as sink:
            while raw := await stream.readline():
                line = raw.decode(errors="replace").rstrip("\r\n")
                sink.write(line + "\n")
                sink.flush()
                async with self._changed:
                    self.lines.append(line)
                    self._changed.notify_all()
        async with self._changed:
            self._ended = True
            self._changed.notify_all()

    async def wait(self, needle: str, timeout: float, after: int = 0) -> tuple[int, str]:
        """The first line from index ``after`` holding ``needle``: (index, line)."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                while True:
                    for index in range(after, len(self.lines)):
                        if needle in self.lines[index]:
                            return index, self.lines[index]
                    if self._ended:
                        raise AssertionError(f"qemu ended before {needle!r}:\n{self.tail()}")
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"no {needle!r} within {timeout:g} s:\n{self.tail()}") from None

    @property
    def ended(self) -> bool:
        return self._ended

    async def next_line(self, timeout: float) -> None:
        """Return when another line arrives (or qemu ends), or after ``timeout``."""
        seen = len(self.lines)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: len(self.lines) > seen or self._ended)

    def tail(self, count: int = 60) -> str:
        return "\n".join(self.lines[-count:])

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def require() -> None:
    for tool in (QEMU, "apt-get", "dpkg-deb", "cpio", "mke2fs", "python3.11"):
        if shutil.which(tool) is None:
            service_missing(f"{tool} is needed to build and boot the re-imaging VM")


@asynccontextmanager
async def vm(
    kernel: Path, initrd: Path, cmdline: str, disks: list[Path], log: Path
) -> AsyncIterator[Console]:
    """qemu (TCG) with the kernel, the initramfs, user networking and ``disks`` (virtio)."""
    drives: list[str] = []
    for disk in disks:
        drives += ["-drive", f"file={disk},format=raw,if=virtio,cache=unsafe"]
    proc = await asyncio.create_subprocess_exec(
        QEMU, "-machine", "pc", "-accel", "tcg", "-m", "1024", "-smp", "1",
        "-display", "none", "-vga", "none", "-monitor", "none", "-serial", "stdio",
        "-no-reboot", "-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline,
        "-nic", "user,model=e1000", *drives,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    console = Console(proc.stdout, log)
    try:
        yield console
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        await console.close()


async def hwfleet_run(
    controller: Controller, uuid_: str, method: str, **params: Any
) -> dict[str, Any]:
    """``hwfleet run DEVICE METHOD --param k=v … --wait --json``; a refusal as ``cli_error``."""
    args = ["run", uuid_, method, "--wait", "--json", "--timeout", f"{METHOD_DEADLINE:g}"]
    for key, value in params.items():
        args += ["--param", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    proc = await asyncio.create_subprocess_exec(
        *HWFLEET, *args, env=cli_env(controller), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(METHOD_DEADLINE + 60):
        out, err = await proc.communicate()
    if proc.returncode == 1:
        return {"cli_error": err.decode()}
    assert proc.returncode == 0, err.decode()
    doc: dict[str, Any] = json.loads(out)
    return doc


async def enrolled(controller: Controller, console: Console) -> str:
    """The VM's device uuid once it is online.

    The agent runs in another machine: only the controller's session table says when it
    is there, so it is looked at after each console line, or each second, until the
    deadline (failing at once if the VM's agent exits or qemu ends).
    """
    end = time.monotonic() + ENROL_DEADLINE
    while time.monotonic() < end:
        online = controller.devices.online()
        if online:
            return online[0]
        if console.ended or any("hwfleet-vm: agent exited" in line for line in console.lines):
            raise AssertionError(f"the VM's agent or qemu ended:\n{console.tail()}")
        await console.next_line(1.0)
    raise AssertionError(f"no device online after {ENROL_DEADLINE:g} s:\n{console.tail()}")


async def test_qemu_vm_reimages_its_disk_and_kexecs_into_the_image(tmp_path: Path) -> None:
    require()
    begun = time.monotonic()
    files = await asyncio.to_thread(vm_files)
    built = time.monotonic() - begun
    disk, held = tmp_path / "vda.raw", tmp_path / "vdb.raw"
    with disk.open("wb") as handle:
        handle.truncate(64 * MIB)  # sparse: the image (25 MiB) plus room for the config drive
    await asyncio.to_thread(held_disk, held)
    password = uuid.uuid4().hex
    settings = controller_settings(
        tmp_path / "controller",
        image_listen="127.0.0.1:0",
        enroll_password=password,
        # An emulated machine: the TLS handshake and each answer take seconds, not milliseconds.
        handshake_timeout=120.0,
        call_timeout=60.0,
    )
    async with running_controller(settings) as ctl:
        image = await add_image(ctl, files.image, "--name", "vm-test")
        assert image["source_format"] == "raw.gz"
        port = ctl.gateway.address[1]
        cmdline = (
            f"console=ttyS0 panic=-1 hwfleet.controller=10.0.2.2:{port} "
            f"hwfleet.images=10.0.2.2:{image_port(ctl)} hwfleet.password={password} "
            f"hwfleet.ca={ctl.admission.ca.fingerprint()}"
        )
        node = str(uuid.uuid4())
        async with vm(
            files.kernel, files.agent_initrd, cmdline, [disk, held], tmp_path / "console.log"
        ) as console:
            powered = time.monotonic()
            _, held_line = await console.wait("hwfleet-vm: /dev/vdb1", ENROL_DEADLINE)
            assert "mounted at /mnt/held" in held_line, console.tail()
            agent = await enrolled(ctl, console)
            enrolled_after = time.monotonic() - powered

            refused = await hwfleet_run(
                ctl, agent, "standby.prepare_image", image=image["id"], device="/dev/vdb"
            )
            assert "its partition vdb1 is mounted at /mnt/held" in refused["cli_error"], refused

            step = time.monotonic()
            reply = await hwfleet_run(
                ctl, agent, "standby.prepare_image", image=image["id"], device="/dev/vda"
            )
            task = reply["task"]
            assert task["state"] == "complete", task
            assert task["result"]["verified"], task
            assert task["result"]["bytes_written"] == image["disk_size"], task
            prepared = time.monotonic() - step

            step = time.monotonic()
            configdrive = {"meta_data": {"uuid": node, "name": "reimaged-by-test"}}
            reply = await hwfleet_run(
                ctl, agent, "standby.run_image", image=image["id"], device="/dev/vda",
                configdrive=configdrive,
            )  # fmt: skip
            task = reply["task"]
            assert task["state"] == "complete", task
            result = task["result"]
            assert result["action"] == "kexec" and result["booting"], result
            assert result["kernel"]["kernel"] == "/boot/vmlinuz", result  # the default entry
            assert result["partition"] == 1, result

            # The image's kernel: its command line is the grub entry's, its init the image's.
            at, up = await console.wait(IMAGE_UP, KEXEC_DEADLINE)
            assert "hwfleet.test=reimaged" in up, up
            _, drive = await console.wait("meta_data uuid=", 120, after=at)
            assert drive.endswith(f"uuid={node}"), drive
            assert "/dev/vda2" in drive, drive  # the partition run_image added
            booted = time.monotonic() - step
    print(
        f"\nqemu (TCG) re-imaging: build/cache {built:.1f} s, power-on to enrolment "
        f"{enrolled_after:.1f} s, prepare_image {prepared:.1f} s, run_image to the image's "
        f"config drive {booted:.1f} s, total {time.monotonic() - begun:.1f} s "
        f"(load {os.getloadavg()[0]:.1f})"
    )
