"""A fake sysfs/procfs tree shaped like a two-socket server, for the sysfs readers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def write(path: Path, content: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content + "\n")


def link(path: Path, target: Path) -> None:
    """A relative symlink, as sysfs makes them, so the tree works wherever it lives."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(os.path.relpath(target, path.parent))


def dmi_type17(size_word: int, extended: int = 0) -> bytes:
    """A minimal SMBIOS Memory Device record (length 0x28)."""
    raw = bytearray(0x28)
    raw[0], raw[1] = 17, 0x28
    raw[0x0C:0x0E] = size_word.to_bytes(2, "little")
    raw[0x1C:0x20] = extended.to_bytes(4, "little")
    return bytes(raw)


def _pci(root: Path, address: str, vendor: str, device: str, cls: str, driver: str | None) -> Path:
    real = root / "sys/devices/pci0000:00" / address
    for name, value in (
        ("vendor", vendor),
        ("device", device),
        ("class", cls),
        ("subsystem_vendor", "0x1028"),
        ("subsystem_device", "0x0716"),
    ):
        write(real / name, value)
    if driver:
        (root / "sys/bus/pci/drivers" / driver).mkdir(parents=True, exist_ok=True)
        link(real / "driver", root / "sys/bus/pci/drivers" / driver)
    link(root / "sys/bus/pci/devices" / address, real)
    return real


def _nic(root: Path, real: Path, name: str, mac: str, **attrs: str) -> None:
    write(real / "address", mac)
    write(real / "type", attrs.pop("type", "1"))
    for key, value in attrs.items():
        write(real / key, value)
    link(root / "sys/class/net" / name, real)


def _cpuinfo() -> str:
    blocks = []
    for processor in range(8):
        blocks.append(
            "\n".join(
                [
                    f"processor\t: {processor}",
                    "vendor_id\t: GenuineIntel",
                    "model name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz",
                    "cpu MHz\t\t: 1999.998",
                    f"physical id\t: {processor // 4}",
                    f"core id\t\t: {processor % 4 // 2}",
                    "flags\t\t: fpu sse2 avx2 vmx",
                ]
            )
        )
    return "\n\n".join(blocks) + "\n"


def _block(root: Path, name: str, sectors: int, **files: str | bytes) -> Path:
    path = root / "sys/block" / name
    write(path / "size", str(sectors))
    write(path / "removable", "0")
    write(path / "ro", "0")
    (path / "holders").mkdir(parents=True, exist_ok=True)
    (path / "slaves").mkdir(parents=True, exist_ok=True)
    for relative, value in files.items():
        write(path / relative.replace("__", "/"), value)
    return path


def build_server(root: Path) -> Path:
    """Populate ``root`` and return it."""
    _pci(root, "0000:00:00.0", "0x8086", "0x09a2", "0x060000", None)
    nic = _pci(root, "0000:04:00.0", "0x8086", "0x1533", "0x020000", "igb")
    virtio = _pci(root, "0000:00:03.0", "0x1af4", "0x1041", "0x020000", "virtio-pci")
    (root / "sys/bus/pci/devices/not-an-address").mkdir(parents=True)

    _nic(root, nic / "net/enp4s0", "enp4s0", "A0:36:9F:00:00:01", speed="1000", carrier="1")
    write(nic / "net/enp4s0/mtu", "9000")
    link(nic / "net/enp4s0/device", nic)
    (root / "sys/bus/virtio/drivers/virtio_net").mkdir(parents=True)
    link(virtio / "virtio2/driver", root / "sys/bus/virtio/drivers/virtio_net")
    _nic(root, virtio / "virtio2/net/eth0", "eth0", "52:54:00:12:34:56", speed="-1", carrier="0")
    link(virtio / "virtio2/net/eth0/device", virtio / "virtio2")
    # A SoC port (no PCI) enslaved to bond0: sysfs shows the bond's MAC, bonding its own.
    second = root / "sys/devices/platform/ff540000.ethernet"
    _nic(root, second / "net/enp5s0", "enp5s0", "02:00:00:00:00:b0", carrier="1")
    write(second / "net/enp5s0/bonding_slave/perm_hwaddr", "A0:36:9F:00:00:02")
    link(second / "net/enp5s0/device", second)
    # A device-backed link with no link-layer address (CAN): not a NIC to match by MAC.
    can = root / "sys/devices/platform/can0dev"
    _nic(root, can / "net/can0", "can0", "", type="280")
    link(can / "net/can0/device", can)
    virtual = root / "sys/devices/virtual/net"
    _nic(root, virtual / "br0", "br0", "aa:bb:cc:dd:ee:ff", mtu="1500")
    (virtual / "br0/bridge").mkdir()
    _nic(root, virtual / "bond0", "bond0", "02:00:00:00:00:b0")
    (virtual / "bond0/bonding").mkdir()
    _nic(root, virtual / "enp4s0.42", "enp4s0.42", "a0:36:9f:00:00:01", uevent="DEVTYPE=vlan")
    _nic(root, virtual / "tap0", "tap0", "0e:00:00:00:00:01", tun_flags="0x1002")
    _nic(root, virtual / "veth9", "veth9", "0e:00:00:00:00:02")
    _nic(root, virtual / "lo", "lo", "00:00:00:00:00:00", type="772")
    _nic(root, virtual / "wg0", "wg0", "", type="65534")

    write(root / "proc/cpuinfo", _cpuinfo())
    write(root / "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", "3200000")
    write(root / "proc/meminfo", "MemTotal:       16310000 kB\nMemFree:        1000 kB")
    write(root / "sys/devices/system/memory/block_size_bytes", "8000000")
    for index in range(128):
        (root / f"sys/devices/system/memory/memory{index}").mkdir(parents=True)
    entries = root / "sys/firmware/dmi/entries"
    write(entries / "17-0/raw", dmi_type17(8192))
    write(entries / "17-1/raw", dmi_type17(0))
    write(entries / "17-2/raw", dmi_type17(0x7FFF, 32768))
    write(entries / "16-0/raw", b"\x10\x17")
    write(root / "proc/sys/kernel/hostname", "rack12-node3")

    _block(
        root,
        "sda",
        7814037168,
        queue__rotational="1",
        device__model="ST4000NM0035-1V4",
        device__vendor="ATA",
        device__vpd_pg80=b"\x00\x80\x00\x0aZC1234AB\x00\x00",
        device__wwid="naa.5000C500A1B2C3D4",
    )
    _block(
        root,
        "nvme0n1",
        2000409264,
        queue__rotational="0",
        device__model="Samsung SSD 980 PRO 1TB",
        device__serial="S5P2NG0R123456",
        wwid="eui.002538b111b0d7c4",
    )
    _block(root, "vdb", 2097152, serial="virtio-serial-1", queue__rotational="1")
    write(_block(root, "vdb", 2097152) / "ro", "1")
    _block(root, "loop0", 0)
    _block(root, "loop1", 131072, loop__backing_file="/var/tmp/disk.img")
    _block(root, "zram0", 0)
    _block(root, "ram0", 131072)
    write(_block(root, "dm-0", 4096) / "slaves/sda", "")
    _block(root, "sdb", 0, device__model="Card Reader", removable="1")
    write(root / "sys/block/sdb/size", "garbage")

    dmi = root / "sys/class/dmi/id"
    write(dmi / "sys_vendor", "Dell Inc.")
    write(dmi / "product_name", "PowerEdge R640")
    write(dmi / "product_serial", "ABC1234")
    write(dmi / "board_serial", "To Be Filled By O.E.M.")
    write(dmi / "bios_version", "2.17.1")
    write(dmi / "chassis_type", "23")
    (dmi / "product_uuid").mkdir()  # unreadable as a file: must be skipped, not fatal
    return root


@pytest.fixture
def server_root(tmp_path: Path) -> Path:
    return build_server(tmp_path / "root")
