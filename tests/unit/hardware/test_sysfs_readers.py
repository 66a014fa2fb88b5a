"""The sysfs readers against a fake server tree: every field, and garbage that must not crash."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hwfleet.agent.hardware import HardwareDispatcher, SysfsHardwareManager
from hwfleet.agent.hardware.cpu import get_cpu
from hwfleet.agent.hardware.disks import list_disks, wwn_from_wwid
from hwfleet.agent.hardware.dmi import get_dmi
from hwfleet.agent.hardware.memory import dmi_memory_device_mb, get_memory
from hwfleet.agent.hardware.net import list_nics, scan_nics
from hwfleet.agent.hardware.pci import list_pci
from hwfleet.protocol.inventory import Disk, Dmi, ExcludedNic, Nic, PciDevice

from .conftest import dmi_type17


def test_pci_lists_functions_with_ids_class_driver_and_subsystem(server_root: Path) -> None:
    found = list_pci(server_root)
    assert [function.address for function in found] == [
        "0000:00:00.0",
        "0000:00:03.0",
        "0000:04:00.0",
    ]
    assert found[2] == PciDevice(
        address="0000:04:00.0",
        vendor="0x8086",
        device="0x1533",
        class_="0x020000",
        driver="igb",
        subsystem_vendor="0x1028",
        subsystem_device="0x0716",
    )
    assert found[0].driver is None


def test_only_device_backed_nics_are_kept_with_pci_through_virtio(server_root: Path) -> None:
    nics = {nic.name: nic for nic in list_nics(server_root, {"enp4s0": ["10.0.0.5"]})}
    assert sorted(nics) == ["enp4s0", "enp5s0", "eth0"]
    assert nics["enp4s0"] == Nic(
        name="enp4s0",
        mac="a0:36:9f:00:00:01",
        pci="0000:04:00.0",
        driver="igb",
        speed_mbps=1000,
        carrier=True,
        mtu=9000,
        ipv4=["10.0.0.5"],
    )
    eth0 = nics["eth0"]
    assert (eth0.pci, eth0.driver, eth0.speed_mbps, eth0.carrier) == (
        "0000:00:03.0",
        "virtio_net",
        None,
        False,
    )


def test_left_out_interfaces_are_named_with_the_reason_sysfs_gives(server_root: Path) -> None:
    report = scan_nics(server_root)
    assert [(e.name, e.reason) for e in report.excluded] == [
        ("bond0", "bond"),
        ("br0", "bridge"),
        ("can0", "no-mac"),
        ("enp4s0.42", "vlan"),
        ("lo", "loopback"),
        ("tap0", "tap"),
        ("veth9", "virtual"),
        ("wg0", "virtual"),
    ]
    # The kernel's rtnetlink kind, when there is one, names it better than sysfs can.
    live = scan_nics(server_root, kinds={"veth9": "veth", "wg0": "wireguard", "tap0": "tun"})
    reasons = {e.name: e.reason for e in live.excluded}
    assert (reasons["veth9"], reasons["wg0"], reasons["tap0"]) == ("veth", "wireguard", "tap")


def test_a_nic_reports_its_permanent_mac_not_the_one_it_took(server_root: Path) -> None:
    nics = {nic.name: nic.mac for nic in scan_nics(server_root).interfaces}
    assert nics["enp5s0"] == "a0:36:9f:00:00:02"  # bonding_slave/perm_hwaddr, not the bond's
    ethtool = {"eth0": "52:54:00:aa:bb:cc", "enp4s0": None, "enp5s0": "00:00:00:00:00:00"}
    live = {
        nic.name: nic.mac for nic in scan_nics(server_root, permanent_mac=ethtool.get).interfaces
    }
    assert live == {
        "eth0": "52:54:00:aa:bb:cc",  # ETHTOOL_GPERMADDR beats the current address
        "enp4s0": "a0:36:9f:00:00:01",  # no permanent address: the current one
        "enp5s0": "a0:36:9f:00:00:02",  # zeros mean "none": the bonding record
    }


def test_the_inventory_names_what_it_left_out(server_root: Path) -> None:
    inventory = HardwareDispatcher([SysfsHardwareManager(server_root)]).inventory()
    assert [nic.name for nic in inventory.interfaces] == ["enp4s0", "enp5s0", "eth0"]
    assert ExcludedNic(name="br0", reason="bridge") in inventory.excluded_interfaces


def test_cpu_counts_logical_cores_and_sockets(server_root: Path) -> None:
    cpu = get_cpu(server_root)
    assert cpu.model == "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"
    assert (cpu.count, cpu.cores, cpu.sockets) == (8, 4, 2)
    assert cpu.frequency_mhz == 3200.0  # the rated maximum wins over the instantaneous MHz
    assert cpu.flags == ["fpu", "sse2", "avx2", "vmx"]
    assert cpu.architecture == os.uname().machine


def test_cpu_falls_back_to_cpuinfo_mhz_and_arm_model(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cpuinfo").write_text(
        "processor\t: 0\nBogoMIPS\t: 48.00\nFeatures\t: fp asimd\n\n"
        "processor\t: 1\nBogoMIPS\t: 48.00\nFeatures\t: fp asimd\n\n"
        "Hardware\t: BCM2835\nProcessor\t: ARMv8 Processor rev 3 (v8l)\n"
    )
    cpu = get_cpu(tmp_path)
    assert (cpu.model, cpu.count, cpu.flags) == ("ARMv8 Processor rev 3 (v8l)", 2, ["fp", "asimd"])
    assert cpu.frequency_mhz is None


def test_memory_prefers_dmi_modules_over_memory_blocks(server_root: Path) -> None:
    memory = get_memory(server_root)
    assert memory.total_bytes == 16310000 * 1024
    assert memory.physical_mb == 8192 + 32768
    shutil.rmtree(server_root / "sys/firmware/dmi/entries")
    assert get_memory(server_root).physical_mb == 128 * 128


def test_dmi_memory_record_sizes() -> None:
    assert dmi_memory_device_mb(dmi_type17(4096)) == 4096
    assert dmi_memory_device_mb(dmi_type17(0x8000 | 524288 // 256)) == 2  # KiB granularity
    assert dmi_memory_device_mb(dmi_type17(0xFFFF)) == 0
    assert dmi_memory_device_mb(dmi_type17(0x7FFF, 65536)) == 65536
    assert dmi_memory_device_mb(b"\x11\x0c") == 0  # truncated record
    assert dmi_memory_device_mb(b"\x10" + bytes(40)) == 0  # not type 17


def test_disks_identity_and_virtual_devices_filtered(server_root: Path) -> None:
    disks = {disk.name: disk for disk in list_disks(server_root)}
    assert sorted(disks) == ["loop1", "nvme0n1", "sda", "sdb", "vdb"]
    assert disks["sda"] == Disk(
        name="sda",
        size=7814037168 * 512,
        rotational=True,
        model="ST4000NM0035-1V4",
        vendor="ATA",
        serial="ZC1234AB",
        wwn="0x5000c500a1b2c3d4",
        removable=False,
        read_only=False,
    )
    nvme = disks["nvme0n1"]
    assert (nvme.serial, nvme.wwn, nvme.rotational) == (
        "S5P2NG0R123456",
        "0x002538b111b0d7c4",
        False,
    )
    assert (disks["vdb"].serial, disks["vdb"].read_only) == ("virtio-serial-1", True)
    assert (disks["sdb"].size, disks["sdb"].removable) == (0, True)  # garbage size reads as 0
    everything = {disk.name for disk in list_disks(server_root, include_virtual=True)}
    assert {"loop0", "zram0", "ram0", "dm-0"} <= everything


def test_wwn_forms() -> None:
    assert wwn_from_wwid("naa.600508B1001C") == "0x600508b1001c"
    assert wwn_from_wwid("t10.ATA     QEMU HARDDISK") is None
    assert wwn_from_wwid(None) is None


def test_dmi_skips_placeholders_and_unreadable_files(server_root: Path) -> None:
    assert get_dmi(server_root) == Dmi(
        sys_vendor="Dell Inc.",
        product_name="PowerEdge R640",
        product_serial="ABC1234",
        bios_version="2.17.1",
        chassis_type="23",
    )
    shutil.rmtree(server_root / "sys/class/dmi")
    assert get_dmi(server_root) is None


def test_manager_on_fake_tree_and_empty_tree(server_root: Path, tmp_path: Path) -> None:
    manager = SysfsHardwareManager(server_root)
    assert manager.hostname() == "rack12-node3"
    assert manager.get_dmi().product_serial == "ABC1234"
    # A tree with nothing readable yields empty answers rather than exceptions.
    empty = tmp_path / "empty"
    (empty / "sys").mkdir(parents=True)
    bare = SysfsHardwareManager(empty)
    assert (bare.list_pci(), bare.list_nics(), bare.list_disks()) == ([], [], [])
    assert bare.get_memory().total_bytes == 0 and bare.hostname() == ""
