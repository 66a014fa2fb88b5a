"""A hardware manager that reports exactly what a simulation profile device says (DESIGN §8).

It rates itself SERVICE_PROVIDER and answers every method, so nothing about
the real machine the simulator runs on leaks into a simulated inventory.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from hwfleet.agent.hardware.base import HardwareDispatcher, HardwareManager, HardwareSupport
from hwfleet.protocol.inventory import Cpu, Disk, Dmi, Memory, Nic, PciDevice
from hwfleet.sim.profiles import ProfileDevice

_MIB = 1024 * 1024


class SimulatedHardwareManager(HardwareManager):
    """Answers from one :class:`ProfileDevice`; returned objects are copies the caller may keep."""

    name = "simulated"

    def __init__(self, device: ProfileDevice) -> None:
        self.device = device

    def evaluate(self) -> HardwareSupport:
        return HardwareSupport.SERVICE_PROVIDER

    def list_pci(self) -> list[PciDevice]:
        return [msgspec.structs.replace(function) for function in self.device.pci]

    def list_nics(self) -> list[Nic]:
        return [msgspec.structs.replace(nic, ipv4=list(nic.ipv4)) for nic in self.device.interfaces]

    def get_cpu(self) -> Cpu:
        return merge_cpus(self.device.cpus)

    def get_memory(self) -> Memory:
        mb = self.device.memory_mb
        return Memory(total_bytes=mb * _MIB, physical_mb=mb or None)

    def list_disks(self) -> list[Disk]:
        return [msgspec.structs.replace(disk) for disk in self.device.disks]

    def get_dmi(self) -> Dmi:
        # The profile's serial, model and uuid are what DMI carries on a real machine.
        return Dmi(
            product_serial=str(self.device.sn),
            product_name=self.device.model_id or None,
            product_uuid=self.device.uuid,
        )

    def hostname(self) -> str:
        return self.device.hostname or self.device.name


def simulated_dispatcher(device: ProfileDevice) -> HardwareDispatcher:
    """Only the profile answers, so no fact of the machine running the simulator leaks in."""
    return HardwareDispatcher([SimulatedHardwareManager(device)])


def merge_cpus(cpus: Sequence[Cpu | str]) -> Cpu:
    """Sum a profile's per-package entries into IPA's one-summary shape.

    An entry that gives only ``cores`` (or only a model name) counts as that many
    logical CPUs (or one), so ``{"model": "X", "cores": 8}`` reads as 8 CPUs, not 0.
    """
    entries = [Cpu(model=entry, count=1) if isinstance(entry, str) else entry for entry in cpus]
    if not entries:
        return Cpu()
    first = entries[0]
    return Cpu(
        model=first.model,
        architecture=first.architecture,
        count=sum(entry.count or entry.cores or 1 for entry in entries),
        cores=sum(entry.cores or entry.count or 1 for entry in entries),
        sockets=sum(entry.sockets or 1 for entry in entries),
        frequency_mhz=first.frequency_mhz,
        flags=list(first.flags),
    )
