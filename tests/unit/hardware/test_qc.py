"""QC: a matching chassis passes; each requirement, when unmet, fails on its own."""

from __future__ import annotations

import msgspec
import pytest

from hwfleet.agent.hardware import QcSpec, run_qc
from hwfleet.protocol.inventory import Cpu, Disk, Inventory, Memory, Nic, PciDevice

GIB = 1 << 30


def chassis() -> Inventory:
    return Inventory(
        cpu=Cpu(model="Intel(R) Xeon(R) Gold 6338", count=64, cores=32, sockets=2),
        memory=Memory(total_bytes=251 * GIB, physical_mb=262144),
        disks=[Disk(name="sda", size=960 * 10**9), Disk(name="sdb", size=480 * 10**9)],
        interfaces=[
            Nic(name="eno1", mac="e0:18:7d:2e:ca:68", pci="0000:04:00.0"),
            Nic(name="eno2", mac="e0:18:7d:2e:ca:69", pci="0000:04:00.1"),
            Nic(name="br0", mac="e0:18:7d:2e:ca:68"),
        ],
        pci=[
            PciDevice(address="0000:04:00.0", vendor="0x8086", device="0x1533", class_="0x020000"),
            PciDevice(address="0000:05:00.0", vendor="0x15b3", device="0x1017", class_="0x020000"),
        ],
    )


FULL = QcSpec(
    cpu_model="gold 6338",
    min_cpu_count=64,
    min_memory_mb=262144,
    disk_count=2,
    min_disk_bytes=480 * 10**9,
    nic_count=2,
    pci_ids=["8086:1533", "0x15B3:0x1017"],
    macs=["E0-18-7D-2E-CA-69"],
)


def test_matching_chassis_passes_every_check() -> None:
    report = run_qc(FULL, chassis())
    assert report.passed
    assert [check.name for check in report.checks] == [
        "cpu_model",
        "min_cpu_count",
        "min_memory_mb",
        "disk_count",
        "min_disk_bytes",
        "nic_count",
        "pci_ids",
        "macs",
    ]
    assert all(check.passed for check in report.checks)


@pytest.mark.parametrize(
    ("change", "failing", "actual"),
    [
        ({"cpu_model": "EPYC"}, "cpu_model", "Intel(R) Xeon(R) Gold 6338"),
        ({"min_cpu_count": 65}, "min_cpu_count", 64),
        ({"min_memory_mb": 262145}, "min_memory_mb", 262144),
        ({"disk_count": 3}, "disk_count", 2),
        ({"min_disk_bytes": 480 * 10**9 + 1}, "min_disk_bytes", 480 * 10**9),
        ({"nic_count": 3}, "nic_count", 2),
        ({"pci_ids": ["8086:1533", "8086:10fb"]}, "pci_ids", ["8086:1533"]),
        ({"macs": ["e0:18:7d:2e:ca:70"]}, "macs", []),
    ],
)
def test_each_requirement_fails_alone(
    change: dict[str, object], failing: str, actual: object
) -> None:
    spec = msgspec.structs.replace(FULL, **change)
    report = run_qc(spec, chassis())
    assert not report.passed
    failed = [check for check in report.checks if not check.passed]
    assert [check.name for check in failed] == [failing]
    assert failed[0].actual == actual


def test_memory_falls_back_to_kernel_total_and_no_disks_fails_min_size() -> None:
    inventory = Inventory(memory=Memory(total_bytes=15 * GIB))
    report = run_qc(QcSpec(min_memory_mb=16384, min_disk_bytes=1), inventory)
    assert [(c.name, c.actual, c.passed) for c in report.checks] == [
        ("min_memory_mb", 15360, False),
        ("min_disk_bytes", 0, False),
    ]


def test_report_encodes_as_json() -> None:
    encoded = msgspec.json.decode(msgspec.json.encode(run_qc(QcSpec(nic_count=2), chassis())))
    assert encoded == {
        "passed": True,
        "checks": [{"name": "nic_count", "expected": 2, "actual": 2, "passed": True}],
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"min_memory": 1}, "unknown field `min_memory`"),
        ({"pci_ids": ["intel:nic"]}, "'intel:nic' is not vendor:device"),
        ({"macs": ["zz:00:00:00:00:00"]}, "is not a MAC address"),
        ({"min_cpu_count": -1}, "`$.min_cpu_count`"),
        ({"disk_count": "two"}, "`$.disk_count`"),
    ],
)
def test_bad_specs_are_rejected_naming_the_field(params: dict[str, object], message: str) -> None:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.convert(params, QcSpec)
    assert message in str(caught.value)
