"""The simulated manager reports its profile device exactly, and nothing of the real machine."""

from __future__ import annotations

import msgspec

from hwfleet.agent.hardware import HardwareSupport
from hwfleet.protocol.inventory import Cpu
from hwfleet.sim.hardware import SimulatedHardwareManager, merge_cpus, simulated_dispatcher
from hwfleet.sim.profiles import generate, parse_profile

PROFILE = b"""{"devices": [{
  "sn": 1001, "name": "bench-7", "model_id": "X1", "uuid": "6F9619FF-8B86-D011-B42D-00C04FC964FF",
  "interfaces": [{"name": "enp4s0", "mac": "E0-18-7D-2E-CA-68", "pci": "0000:04:00.0"}],
  "pci": [{"address": "0000:04:00.0", "vendor": "0x8086", "device": "0x1533", "class": "0x020000"}],
  "memory_mb": 4096,
  "cpus": [{"model": "Cortex-A72", "cores": 4}, "Cortex-A53"],
  "disks": [{"name": "mmcblk0", "size": 32000000000}]
}]}"""


def test_reports_exactly_the_profile() -> None:
    device = parse_profile(PROFILE).devices[0]
    inventory = simulated_dispatcher(device).inventory()
    assert inventory.hostname == "bench-7"
    assert [(n.name, n.mac, n.pci) for n in inventory.interfaces] == [
        ("enp4s0", "E0-18-7D-2E-CA-68", "0000:04:00.0")
    ]
    assert msgspec.to_builtins(inventory.pci) == [
        {"address": "0000:04:00.0", "vendor": "0x8086", "device": "0x1533", "class": "0x020000"}
    ]
    assert (inventory.memory.total_bytes, inventory.memory.physical_mb) == (4096 << 20, 4096)
    assert inventory.cpu == Cpu(model="Cortex-A72", count=5, cores=5, sockets=2)
    assert [(d.name, d.size) for d in inventory.disks] == [("mmcblk0", 32000000000)]
    assert inventory.dmi is not None
    assert inventory.dmi.product_serial == "1001"
    assert inventory.dmi.product_uuid == "6f9619ff-8b86-d011-b42d-00c04fc964ff"


def test_empty_profile_fields_stay_empty_instead_of_leaking_real_hardware() -> None:
    device = parse_profile(b'{"devices": [{"sn": "A1"}]}').devices[0]
    dispatcher = simulated_dispatcher(device)
    assert [m.name for m in dispatcher.managers] == ["simulated"]
    inventory = dispatcher.inventory()
    assert (inventory.pci, inventory.interfaces, inventory.disks) == ([], [], [])
    assert inventory.cpu == Cpu() and inventory.memory.total_bytes == 0


def test_answers_are_copies() -> None:
    device = generate(1, seed=3).devices[0]
    manager = SimulatedHardwareManager(device)
    assert manager.evaluate() is HardwareSupport.SERVICE_PROVIDER
    manager.list_nics()[0].ipv4.append("10.9.9.9")
    manager.list_disks()[0].size = 1
    assert device.interfaces[0].ipv4 == [] and device.disks[0].size > 1


def test_merge_cpus() -> None:
    assert merge_cpus([]) == Cpu()
    single = Cpu(model="EPYC", count=32, cores=16, sockets=1, frequency_mhz=3000.0)
    assert merge_cpus([single]) == single
    assert merge_cpus(["A", "B"]) == Cpu(model="A", count=2, cores=2, sockets=2)
