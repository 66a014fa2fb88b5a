"""What the qemu re-imaging test boots, built from Debian packages and cached.

Three artefacts, all from the Debian kernel package ``linux-image-amd64`` points at
(fetched with ``apt-get download``, unpacked, never installed) and this machine's
Debian binaries:

- ``vmlinuz`` — the kernel, booted directly by qemu and again, from the image, by kexec;
- ``agent-initrd.img`` — the discovery environment's tree
  (:func:`hwfleet.boot.discovery_image.build_tree`: busybox, python3.11, hwfleet and its
  dependencies) plus what re-imaging needs on a real machine: ``kexec`` (kexec-tools),
  ``genisoimage``, util-linux ``mount`` (loop mounts with an offset), ``efibootmgr``, and
  the virtio disk, loop, ext4, vfat and efivarfs modules; its ``/init``
  (:data:`AGENT_INIT`) runs the agent against the controller named on the kernel command
  line;
- ``image.raw.gz`` — a small whole-disk image: an MBR with one bootable Linux partition
  (ext2, ``mke2fs -d``) holding the same kernel, a tiny busybox initramfs and a
  ``boot/grub/grub.cfg`` whose default entry the agent must pick. That initramfs
  (:data:`IMAGE_INIT`) prints :data:`IMAGE_UP` and then the config drive's ``meta_data``
  uuid, which is how the test sees the image come up and read its config drive;
- ``image-efi.raw.gz`` — the same boot partition on a GPT disk after an EFI system
  partition (FAT) whose ``EFI/BOOT/BOOTX64.EFI`` is the kernel (its EFI stub), for the
  UEFI run: the agent must make that loader the firmware's first boot entry.

Everything lands in a cache directory (``HWFLEET_TEST_CACHE``, default
``~/.cache/hwfleet-tests``) under a key made of the kernel package and the text of
every input (hwfleet's sources included), so a re-run with nothing changed reuses
it and a changed agent is rebuilt.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import hwfleet
from hwfleet.boot.discovery_image import (
    BUSYBOX,
    BuildError,
    _copy,
    _libraries,
    _run,
    build_tree,
    fetch_kernel,
    kernel_package,
    write_cpio,
)

MIB = 1024 * 1024
SECTOR = 512
#: The agent's environment: NIC (qemu's e1000), virtio disks, loop mounts of the boot partition
#: (ext4 asks the crypto API for crc32c when it mounts: no module dependency names it).
AGENT_MODULES = ("e1000", "virtio_pci", "virtio_blk", "loop", "crc32c_generic", "ext4",
                 "efivarfs", "vfat", "nls_cp437", "nls_utf8", "nls_ascii")  # fmt: skip
#: The image's own initramfs: its disk and the config drive's ISO 9660.
IMAGE_MODULES = ("virtio_pci", "virtio_blk", "isofs")
#: Host binaries the agent runs when it re-images (kexec-tools, genisoimage, util-linux,
#: efibootmgr on UEFI).
TOOLS = (Path("/usr/sbin/kexec"), Path("/usr/bin/genisoimage"), Path("/usr/bin/mount"),
         Path("/usr/bin/umount"), Path("/usr/bin/efibootmgr"))  # fmt: skip
IMAGE_UP = "hwfleet-test-image: up"
BOOT_PARTITION_MIB = 24
ESP_MIB = 8

AGENT_INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
# util-linux mount (loop mounts with offset=) before busybox's.
export PATH=/usr/sbin:/usr/bin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /run /tmp /var/lib/hwfleet /mnt/held
for m in $(cat /etc/hwfleet/modules); do
  insmod "/lib/modules/$m" || echo "hwfleet-vm: insmod $m failed"
done
arg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^$1=//p" | tail -n 1; }
if [ -d /sys/firmware/efi ]; then
  mount -t efivarfs efivarfs /sys/firmware/efi/efivars && echo "hwfleet-vm: UEFI, efivarfs mounted"
fi
ip link set lo up
for dev in $(ls /sys/class/net); do
  [ "$dev" = lo ] && continue
  ip link set "$dev" up
  udhcpc -i "$dev" -n -q -t 10 -T 2 -s /etc/hwfleet/udhcpc.sh && break
done
# A second disk with a mounted partition: the agent must refuse it as a target.
if mount -o ro /dev/vdb1 /mnt/held; then
  echo "hwfleet-vm: /dev/vdb1 mounted at /mnt/held"
else
  echo "hwfleet-vm: /dev/vdb1 could not be mounted"
fi
export HWFLEET_CONNECT_TIMEOUT=120
export HWFLEET_ENROLL_PASSWORD="$(arg hwfleet.password)"
CA=$(arg hwfleet.ca)
echo "hwfleet-vm: agent for $(arg hwfleet.controller), images from $(arg hwfleet.images)"
PYTHONPATH=/opt/hwfleet/site /usr/bin/python3.11 -m hwfleet agent \
  --controller "$(arg hwfleet.controller)" --image-server "$(arg hwfleet.images)" \
  --data-dir /var/lib/hwfleet --no-discovery ${CA:+--controller-fingerprint=$CA}
echo "hwfleet-vm: agent exited ($?)"
poweroff -f
"""

IMAGE_INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /etc/modules); do insmod "/lib/modules/$m"; done
echo "hwfleet-test-image: up, kernel $(uname -r), cmdline: $(cat /proc/cmdline)"
mkdir -p /cd
for dev in /dev/vda1 /dev/vda2 /dev/vda3 /dev/vda4; do
  [ -b "$dev" ] || continue
  if mount -t iso9660 -o ro "$dev" /cd 2>/dev/null; then
    if [ -f /cd/openstack/latest/meta_data.json ]; then
      uuid=$(sed -n 's/.*"uuid": *"\([^"]*\)".*/\1/p' /cd/openstack/latest/meta_data.json)
      echo "hwfleet-test-image: config drive $dev meta_data uuid=$uuid"
      break
    fi
    umount /cd
  fi
done
echo "hwfleet-test-image: done"
poweroff -f
"""

GRUB_CFG = """\
set timeout=0
set default="1"
menuentry 'not the default' {
    linux /boot/vmlinuz-absent console=ttyS0
}
menuentry 'hwfleet test image' {
    linux /boot/vmlinuz console=ttyS0 hwfleet.test=reimaged panic=-1
    initrd /boot/initrd.img
}
"""


@dataclass(frozen=True)
class VmFiles:
    kernel: Path
    agent_initrd: Path
    image: Path  # raw.gz, MBR
    efi_image: Path  # raw.gz, GPT with an EFI system partition


def cache_root() -> Path:
    given = os.environ.get("HWFLEET_TEST_CACHE")
    return Path(given) if given else Path.home() / ".cache" / "hwfleet-tests"


def _source_key(package: str) -> str:
    """Every input's text: a changed agent, init or builder means a new build."""
    sha = hashlib.sha256(package.encode())
    for text in (AGENT_INIT, IMAGE_INIT, GRUB_CFG, repr(AGENT_MODULES), repr(IMAGE_MODULES)):
        sha.update(text.encode())
    package_dir = Path(hwfleet.__file__).parent
    for path in sorted(package_dir.rglob("*.py")):
        sha.update(str(path.relative_to(package_dir)).encode())
        sha.update(path.read_bytes())
    sha.update(Path(__file__).read_bytes())
    return sha.hexdigest()[:16]


def vm_files() -> VmFiles:
    """The cached build for this tree, built first when missing (a few minutes)."""
    package = kernel_package()
    out = cache_root() / "imaging-vm" / _source_key(package)
    files = VmFiles(
        out / "vmlinuz", out / "agent-initrd.img", out / "image.raw.gz", out / "image-efi.raw.gz"
    )
    if all(p.is_file() for p in (files.kernel, files.agent_initrd, files.image, files.efi_image)):
        return files
    kernel_dir = cache_root() / "kernel" / package
    with tempfile.TemporaryDirectory(prefix="hwfleet-vm-build-") as tmp:
        work = Path(tmp)
        vmlinuz, modules = _kernel(package, kernel_dir, work)
        building = Path(tempfile.mkdtemp(prefix="building-", dir=_mkdir(out.parent)))
        shutil.copy2(vmlinuz, building / "vmlinuz")
        _agent_initrd(work / "agent", modules, building / "agent-initrd.img")
        _image(work / "image", vmlinuz, modules, building / "image.raw.gz")
        _efi_image(work / "image", vmlinuz, building / "image-efi.raw.gz")
        shutil.rmtree(out, ignore_errors=True)
        os.replace(building, out)  # whole or not at all: a cut build is never reused
    for older in out.parent.iterdir():  # builds of earlier sources (~120 MB each)
        if older != out and not older.name.startswith("building-"):
            shutil.rmtree(older, ignore_errors=True)
    return files


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _kernel(package: str, keep: Path, work: Path) -> tuple[Path, Path]:
    """(vmlinuz, modules dir): the package's .deb is kept so a rebuild does not fetch it."""
    for deb in keep.glob(f"{package}_*.deb"):
        shutil.copy2(deb, work / deb.name)
    found = fetch_kernel(package, work)
    if not any(keep.glob(f"{package}_*.deb")):
        for deb in work.glob(f"{package}_*.deb"):
            shutil.copy2(deb, _mkdir(keep) / deb.name)
    return found


def module_closure(modules: Path, names: tuple[str, ...]) -> list[str]:
    """The modules (paths relative to ``modules``) ``names`` need, dependencies first.

    A name the kernel has built in (``modules.builtin``) needs nothing; an unknown one
    stops the build. ``modules.dep`` is made first when the unpacked package has none.
    """
    if not (modules / "modules.dep").is_file():
        # The package leaves modules.dep to depmod at install time; busybox has one.
        _run(str(BUSYBOX), "depmod", "-b", str(modules.parents[2]), modules.name)
    deps: dict[str, list[str]] = {}
    for line in (modules / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
    by_name = {_module_name(p): p for p in deps}
    builtin = {
        _module_name(p) for p in (modules / "modules.builtin").read_text().split() if p.strip()
    }
    ordered: list[str] = []

    def visit(path: str) -> None:
        if path in ordered:
            return
        for dep in deps.get(path, []):
            visit(dep)
        ordered.append(path)

    for name in names:
        if name in by_name:
            visit(by_name[name])
        elif name not in builtin:
            raise BuildError(f"the kernel has no module {name!r}")
    return ordered


def _module_name(path: str) -> str:
    return Path(path).name.split(".ko")[0].replace("-", "_")


def _modules_into(root: Path, modules: Path, names: tuple[str, ...], listing: Path) -> None:
    wanted = module_closure(modules, names)
    for rel in wanted:
        (root / "lib/modules" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(modules / rel, root / "lib/modules" / rel)
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text("\n".join(wanted) + "\n")


def _agent_initrd(root: Path, modules: Path, out: Path) -> None:
    build_tree(root, modules)  # the discovery environment: busybox, python, hwfleet
    for tool in TOOLS:
        if not tool.is_file():
            raise BuildError(f"{tool} is missing: install kexec-tools, genisoimage, mount")
        _copy(tool, root)
    for lib in _libraries(list(TOOLS)):
        _copy(lib, root)
    _modules_into(root, modules, AGENT_MODULES, root / "etc/hwfleet/modules")
    (root / "init").write_text(AGENT_INIT)
    (root / "init").chmod(0o755)
    write_cpio(root, out)


def _image_initrd(root: Path, modules: Path, out: Path) -> None:
    for sub in ("bin", "proc", "sys", "dev", "etc"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for lib in _libraries([BUSYBOX]):
        _copy(lib, root)
    _modules_into(root, modules, IMAGE_MODULES, root / "etc/modules")
    (root / "init").write_text(IMAGE_INIT)
    (root / "init").chmod(0o755)
    write_cpio(root, out)


def _image(work: Path, vmlinuz: Path, modules: Path, out: Path) -> None:
    """An MBR disk: partition 1 (bootable, 0x83, ext2 at 1 MiB) holding kernel, initrd, grub."""
    boot = work / "tree" / "boot"
    (boot / "grub").mkdir(parents=True)
    shutil.copy2(vmlinuz, boot / "vmlinuz")
    _image_initrd(work / "initrd-root", modules, boot / "initrd.img")
    (boot / "grub" / "grub.cfg").write_text(GRUB_CFG)
    part = work / "part.img"
    size = BOOT_PARTITION_MIB * MIB
    _run("mke2fs", "-q", "-F", "-t", "ext2", "-L", "boot", "-d", str(work / "tree"),
         str(part), f"{BOOT_PARTITION_MIB}M")  # fmt: skip
    disk = work / "disk.raw"
    with disk.open("wb") as handle:
        handle.write(mbr([(MIB // SECTOR, size // SECTOR, 0x83, True)]))
    _place(disk, part, MIB)
    _gzip(disk, out)


def _efi_image(work: Path, vmlinuz: Path, out: Path) -> None:
    """A GPT disk: an EFI system partition (FAT, the kernel as EFI/BOOT/BOOTX64.EFI, its EFI
    stub being a loader firmware can start) and, after it, ``_image``'s boot partition."""
    esp = work / "esp.img"
    _run("mkfs.vfat", "-C", str(esp), str(ESP_MIB * 1024))
    _run("mmd", "-i", str(esp), "::/EFI", "::/EFI/BOOT")
    _run("mcopy", "-i", str(esp), str(vmlinuz), "::/EFI/BOOT/BOOTX64.EFI")
    disk = work / "disk-efi.raw"
    with disk.open("wb") as handle:
        handle.truncate((2 + ESP_MIB + BOOT_PARTITION_MIB) * MIB)  # 1 MiB each side: the GPTs
    esp_part = ["-n", f"1:1M:+{ESP_MIB}M", "-t", "1:EF00", "-c", "1:esp"]
    boot_part = ["-n", f"2:0:+{BOOT_PARTITION_MIB}M", "-t", "2:8300", "-c", "2:boot"]
    _run("sgdisk", *esp_part, *boot_part, str(disk))
    _place(disk, esp, MIB)
    _place(disk, work / "part.img", (1 + ESP_MIB) * MIB)
    _gzip(disk, out)


def _place(disk: Path, part: Path, offset: int) -> None:
    with disk.open("r+b") as handle, part.open("rb") as data:
        handle.seek(offset)
        shutil.copyfileobj(data, handle, MIB)


def _gzip(disk: Path, out: Path) -> None:
    with disk.open("rb") as raw, gzip.open(out, "wb", compresslevel=6) as packed:
        shutil.copyfileobj(raw, packed, MIB)


def mbr(parts: list[tuple[int, int, int, bool]]) -> bytes:
    """A master boot record (no boot code): entries (start sector, sectors, type, bootable)."""
    table = bytearray(SECTOR)
    for index, (start, sectors, kind, bootable) in enumerate(parts):
        entry = bytes([0x80 if bootable else 0, 0xFE, 0xFF, 0xFF, kind, 0xFE, 0xFF, 0xFF])
        entry += start.to_bytes(4, "little") + sectors.to_bytes(4, "little")
        table[446 + 16 * index : 446 + 16 * (index + 1)] = entry
    table[510:512] = b"\x55\xaa"
    return bytes(table)


def held_disk(path: Path) -> None:
    """A small disk with one ext2 partition, which the VM's init mounts (a refused target)."""
    part = path.with_suffix(".part")
    _run("mke2fs", "-q", "-F", "-t", "ext2", "-L", "held", str(part), "4M")
    with path.open("wb") as handle:
        handle.write(mbr([(MIB // SECTOR, 4 * MIB // SECTOR, 0x83, False)]))
        handle.seek(MIB)
        with part.open("rb") as data:
            shutil.copyfileobj(data, handle, MIB)
        handle.truncate(8 * MIB)
    part.unlink()
