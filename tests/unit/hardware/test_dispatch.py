"""Priority dispatch: best manager first, fall through on IncompatibleHardwareMethodError only."""

from __future__ import annotations

import pytest

from hwfleet.agent.hardware import (
    HardwareDispatcher,
    HardwareManager,
    HardwareSupport,
    IncompatibleHardwareMethodError,
)
from hwfleet.protocol.inventory import Cpu, Disk, Memory, Nic


class Generic(HardwareManager):
    name = "generic"

    def evaluate(self) -> HardwareSupport:
        return HardwareSupport.GENERIC

    def get_cpu(self) -> Cpu:
        return Cpu(model="generic cpu", count=2)

    def list_disks(self) -> list[Disk]:
        return [Disk(name="sda", size=1)]

    def hostname(self) -> str:
        return "generic-host"

    def get_memory(self) -> Memory:
        return Memory(total_bytes=1024)


class Vendor(HardwareManager):
    """Knows disks behind its RAID controller; declines the rest."""

    name = "vendor"

    def evaluate(self) -> HardwareSupport:
        return HardwareSupport.MAINLINE

    def list_disks(self) -> list[Disk]:
        return [Disk(name="raid0", size=2)]

    def get_cpu(self) -> Cpu:
        raise IncompatibleHardwareMethodError("no idea")


class Absent(HardwareManager):
    name = "absent"

    def evaluate(self) -> HardwareSupport:
        return HardwareSupport.NONE

    def hostname(self) -> str:
        raise AssertionError("a manager rated NONE must never be asked")


class Broken(HardwareManager):
    name = "broken"

    def evaluate(self) -> HardwareSupport:
        return HardwareSupport.SERVICE_PROVIDER

    def list_nics(self) -> list[Nic]:
        raise OSError("sysfs vanished")


def test_orders_by_support_and_drops_none() -> None:
    dispatcher = HardwareDispatcher([Absent(), Generic(), Vendor()])
    assert [m.name for m in dispatcher.managers] == ["vendor", "generic"]


def test_ties_keep_the_callers_order() -> None:
    first, second = Generic(), Generic()
    assert HardwareDispatcher([first, second]).managers == [first, second]


def test_each_method_falls_through_independently() -> None:
    dispatcher = HardwareDispatcher([Generic(), Vendor(), Absent()])
    assert dispatcher.list_disks() == [Disk(name="raid0", size=2)]  # vendor wins
    assert dispatcher.get_cpu().model == "generic cpu"  # vendor declined explicitly
    assert dispatcher.hostname() == "generic-host"  # vendor does not implement it


def test_no_manager_implements_it() -> None:
    dispatcher = HardwareDispatcher([Vendor()])
    with pytest.raises(IncompatibleHardwareMethodError, match="list_pci"):
        dispatcher.list_pci()


def test_other_errors_are_not_swallowed() -> None:
    dispatcher = HardwareDispatcher([Broken(), Generic()])
    with pytest.raises(OSError, match="vanished"):
        dispatcher.list_nics()


def test_inventory_combines_and_leaves_unimplemented_fields_empty() -> None:
    inventory = HardwareDispatcher([Vendor(), Generic()]).inventory()
    assert inventory.hostname == "generic-host"
    assert inventory.disks == [Disk(name="raid0", size=2)]
    assert inventory.cpu == Cpu(model="generic cpu", count=2)
    assert inventory.memory == Memory(total_bytes=1024)
    assert (inventory.pci, inventory.interfaces, inventory.dmi) == ([], [], None)
