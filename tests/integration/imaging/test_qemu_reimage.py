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
    # The build makes both images (the UEFI one with a FAT ESP on GPT) and puts efibootmgr
    # into the agent's initramfs.
    needed = (QEMU, "apt-get", "dpkg-deb", "cpio", "mke2fs", "python3.11", "sgdisk",
              "mkfs.vfat", "mmd", "mcopy", "efibootmgr")  # fmt: skip
    for tool in needed:
        if shutil.which(tool) is None:
            service_missing(f"{tool} is needed to build and boot the re-imaging VM")


#: ``run_image`` up to, not including, the jump into the image.
ONLY_PLAN: dict[str, Any] = {"configdrive": {"meta_data": {"uuid": "plan-only"}}, "boot": False}
#: OVMF (Debian's ``ovmf``): the firmware code, and the variable store each UEFI VM copies.
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")


def boot_variables(store: bytes) -> tuple[list[int], dict[int, str]]:
    """``BootOrder`` and each live ``Boot####``'s description, from an OVMF variable store.

    The store (after the firmware volume's header) is a log: each variable is a 60-byte
    authenticated header (start id 0x55AA, state, …, name and data sizes at 36 and 40),
    its UTF-16 name and its data, 4-byte aligned. A changed or deleted variable stays in
    the log with its state bits cleared; only state 0x3F (added) is live.
    """
    offset = int.from_bytes(store[0x30:0x32], "little") + 28  # FV header, then store header
    order: list[int] = []
    entries: dict[int, str] = {}
    while store[offset : offset + 2] == b"\xaa\x55":
        state = store[offset + 2]
        name_size = int.from_bytes(store[offset + 36 : offset + 40], "little")
        data_size = int.from_bytes(store[offset + 40 : offset + 44], "little")
        name = store[offset + 60 : offset + 60 + name_size].decode("utf-16-le").rstrip("\0")
        data = store[offset + 60 + name_size : offset + 60 + name_size + data_size]
        if state == 0x3F and name == "BootOrder":
            order = [int.from_bytes(data[i : i + 2], "little") for i in range(0, len(data), 2)]
        elif state == 0x3F and len(name) == 8 and name.startswith("Boot"):
            # EFI_LOAD_OPTION: attributes (4), path list length (2), then the description.
            text = data[6:].decode("utf-16-le", errors="replace")
            entries[int(name[4:], 16)] = text.split("\0", 1)[0]
        offset = (offset + 60 + name_size + data_size + 3) & ~3
    return order, entries


@asynccontextmanager
async def vm(
    kernel: Path,
    initrd: Path,
    cmdline: str,
    disks: list[Path],
    log: Path,
    firmware: list[str] | None = None,
) -> AsyncIterator[Console]:
    """qemu (TCG) with the kernel, the initramfs, user networking and ``disks`` (virtio).

    ``firmware``: more qemu arguments (the UEFI run's pflash drives); BIOS without.
    """
    drives: list[str] = []
    for disk in disks:
        drives += ["-drive", f"file={disk},format=raw,if=virtio,cache=unsafe"]
    proc = await asyncio.create_subprocess_exec(
        QEMU, "-machine", "pc", "-accel", "tcg", "-m", "1024", "-smp", "1",
        "-display", "none", "-vga", "none", "-monitor", "none", "-serial", "stdio",
        "-no-reboot", *(firmware or []),
        "-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline,
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


@asynccontextmanager
async def reimaging_rig(
    tmp_path: Path, image_of: str, firmware: list[str] | None = None
) -> AsyncIterator[tuple[Controller, Console, dict[str, Any], str]]:
    """A controller holding the image, and the VM booted with the agent: (ctl, console,
    image record, the VM's device uuid once enrolled)."""
    files = await asyncio.to_thread(vm_files)
    disk, held = tmp_path / "vda.raw", tmp_path / "vdb.raw"
    with disk.open("wb") as handle:
        handle.truncate(64 * MIB)  # sparse: the image (25 or 34 MiB) plus room for the config drive
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
        image = await add_image(ctl, getattr(files, image_of), "--name", "vm-test")
        assert image["source_format"] == "raw.gz"
        port = ctl.gateway.address[1]
        cmdline = (
            f"console=ttyS0 panic=-1 hwfleet.controller=10.0.2.2:{port} "
            f"hwfleet.images=10.0.2.2:{image_port(ctl)} hwfleet.password={password} "
            f"hwfleet.ca={ctl.admission.ca.fingerprint()}"
        )
        async with vm(
            files.kernel, files.agent_initrd, cmdline, [disk, held], tmp_path / "console.log",
            firmware,
        ) as console:  # fmt: skip
            _, held_line = await console.wait("hwfleet-vm: /dev/vdb1", ENROL_DEADLINE)
            assert "mounted at /mnt/held" in held_line, console.tail()
            yield ctl, console, image, await enrolled(ctl, console)


async def reimage(
    ctl: Controller, console: Console, image: dict[str, Any], agent: str
) -> dict[str, Any]:
    """``prepare_image`` then ``run_image`` onto ``/dev/vda``, as an operator runs them; the
    image's kernel must come up and read its config drive. ``run_image``'s result."""
    reply = await hwfleet_run(
        ctl, agent, "standby.prepare_image", image=image["id"], device="/dev/vda"
    )
    task = reply["task"]
    assert task["state"] == "complete", task
    assert task["result"]["verified"], task
    assert task["result"]["bytes_written"] == image["disk_size"], task

    node = str(uuid.uuid4())
    configdrive = {"meta_data": {"uuid": node, "name": "reimaged-by-test"}}
    reply = await hwfleet_run(
        ctl, agent, "standby.run_image", image=image["id"], device="/dev/vda",
        configdrive=configdrive,
    )  # fmt: skip
    task = reply["task"]
    assert task["state"] == "complete", task
    result: dict[str, Any] = task["result"]
    assert result["action"] == "kexec" and result["booting"], result
    assert result["kernel"]["kernel"] == "/boot/vmlinuz", result  # the default entry

    # The image's kernel: its command line is the grub entry's, its init the image's.
    at, up = await console.wait(IMAGE_UP, KEXEC_DEADLINE)
    assert "hwfleet.test=reimaged" in up, up
    _, drive = await console.wait("meta_data uuid=", 120, after=at)
    assert drive.endswith(f"uuid={node}"), drive
    result["config_drive_line"] = drive
    return result


async def test_qemu_vm_reimages_its_disk_and_kexecs_into_the_image(tmp_path: Path) -> None:
    require()
    begun = time.monotonic()
    async with reimaging_rig(tmp_path, "image") as (ctl, console, image, agent):
        enrolled_after = time.monotonic() - begun
        refused = await hwfleet_run(
            ctl, agent, "standby.prepare_image", image=image["id"], device="/dev/vdb"
        )
        assert "its partition vdb1 is mounted at /mnt/held" in refused["cli_error"], refused

        step = time.monotonic()
        result = await reimage(ctl, console, image, agent)
        assert result["partition"] == 1, result
        assert "BIOS: the image's own MBR boot code is the disk's boot loader" in result["steps"]
        assert "/dev/vda2" in result["config_drive_line"]  # the partition run_image added
    print(
        f"\nqemu (TCG, BIOS) re-imaging: build/cache and power-on to enrolment "
        f"{enrolled_after:.1f} s, prepare_image + run_image to the image's config drive "
        f"{time.monotonic() - step:.1f} s (load {os.getloadavg()[0]:.1f})"
    )


async def test_qemu_uefi_vm_makes_the_image_loader_the_first_boot_entry(tmp_path: Path) -> None:
    """OVMF firmware: the agent adds a boot entry for the image's EFI loader, first in
    BootOrder, and it is in the firmware's variable store after the VM is gone."""
    require()
    for path in (OVMF_CODE, OVMF_VARS):
        if not path.is_file():
            service_missing(f"{path} is missing: install Debian's ovmf")
    variables = tmp_path / "OVMF_VARS.fd"
    shutil.copyfile(OVMF_VARS, variables)
    firmware = [
        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
        "-drive", f"if=pflash,format=raw,unit=1,file={variables}",
    ]  # fmt: skip
    assert "hwfleet image" not in boot_variables(variables.read_bytes())[1].values()
    begun = time.monotonic()
    async with reimaging_rig(tmp_path, "efi_image", firmware) as (ctl, console, image, agent):
        assert any("hwfleet-vm: UEFI, efivarfs mounted" in line for line in console.lines)
        # A first re-image that stops before the jump leaves an entry; the real one below
        # must replace it, not add a second (NVRAM is small).
        for method, extra in (("standby.prepare_image", {}), ("standby.run_image", ONLY_PLAN)):
            reply = await hwfleet_run(
                ctl, agent, method, image=image["id"], device="/dev/vda", **extra
            )
            assert reply["task"]["state"] == "complete", reply
        planned = reply["task"]["result"]
        assert planned["booting"] is False and "is first in BootOrder" in str(planned["steps"])
        result = await reimage(ctl, console, image, agent)
        assert result["partition"] == 2, result  # the boot partition after the ESP
        uefi = [step for step in result["steps"] if step.startswith("UEFI")]
        assert len(uefi) == 1, result["steps"]
        assert "'hwfleet image' (\\EFI\\BOOT\\BOOTX64.EFI on partition 1)" in uefi[0], uefi
        assert "is first in BootOrder" in uefi[0], uefi
        assert "/dev/vda3" in result["config_drive_line"]  # GPT: after the ESP and boot
        await console.wait("hwfleet-test-image: done", 120)
        while not console.ended:  # the image powers off: qemu writes its variables and ends
            await console.next_line(5.0)
    order, entries = boot_variables(variables.read_bytes())
    ours = [number for number, text in entries.items() if text == "hwfleet image"]
    assert len(ours) == 1, f"not one live 'hwfleet image' entry in the NVRAM: {entries}"
    assert order[:1] == ours, f"BootOrder {order} does not start with {ours}"
    print(
        f"\nqemu (TCG, UEFI) re-imaging: total {time.monotonic() - begun:.1f} s; {uefi[0]} "
        f"(load {os.getloadavg()[0]:.1f})"
    )
