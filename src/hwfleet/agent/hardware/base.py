"""Hardware managers and their priority dispatch (the ironic-python-agent idea).

Each :class:`HardwareManager` says how well it supports this machine
(:meth:`~HardwareManager.evaluate`); the :class:`HardwareDispatcher` asks the
best one first and, for every method, falls through to the next manager when
one raises :class:`IncompatibleHardwareMethodError`. A vendor manager can therefore
override one method (say, disks behind a RAID controller) and leave the rest to
the generic sysfs manager.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from enum import IntEnum
from typing import TypeVar

from hwfleet.errors import DeviceError
from hwfleet.protocol.inventory import (
    Cpu,
    Disk,
    Dmi,
    Inventory,
    Memory,
    Nic,
    NicReport,
    PciDevice,
)

T = TypeVar("T")


class HardwareSupport(IntEnum):
    """How well a manager fits this machine; higher wins."""

    NONE = 0
    GENERIC = 1
    MAINLINE = 2
    SERVICE_PROVIDER = 3


class IncompatibleHardwareMethodError(DeviceError):
    """This manager cannot answer this method here; the dispatcher tries the next one."""


#: The name third-party hardware managers (ironic-python-agent's spelling) raise.
IncompatibleHardwareMethod = IncompatibleHardwareMethodError


class HardwareManager(ABC):
    """One source of hardware facts; it raises IncompatibleHardwareMethodError for the rest."""

    name: str = "base"

    @abstractmethod
    def evaluate(self) -> HardwareSupport:
        """How well this manager supports the machine it runs on."""

    def _unsupported(self, method: str) -> IncompatibleHardwareMethodError:
        return IncompatibleHardwareMethodError(f"{self.name} does not implement {method}")

    def list_pci(self) -> list[PciDevice]:
        raise self._unsupported("list_pci")

    def list_nics(self) -> list[Nic]:
        raise self._unsupported("list_nics")

    def nic_report(self) -> NicReport:
        """The NICs and the interfaces left out (a manager that leaves none out keeps this)."""
        return NicReport(interfaces=self.list_nics())

    def get_cpu(self) -> Cpu:
        raise self._unsupported("get_cpu")

    def get_memory(self) -> Memory:
        raise self._unsupported("get_memory")

    def list_disks(self) -> list[Disk]:
        raise self._unsupported("list_disks")

    def get_dmi(self) -> Dmi:
        raise self._unsupported("get_dmi")

    def hostname(self) -> str:
        raise self._unsupported("hostname")


class HardwareDispatcher:
    """Managers ordered by support (best first); each method goes to the first that answers."""

    def __init__(self, managers: Iterable[HardwareManager]) -> None:
        rated = [(manager.evaluate(), index, manager) for index, manager in enumerate(managers)]
        # Stable on ties: among equally supported managers the caller's order decides.
        rated.sort(key=lambda item: (-int(item[0]), item[1]))
        self._managers = [
            manager for support, _, manager in rated if support > HardwareSupport.NONE
        ]

    @property
    def managers(self) -> list[HardwareManager]:
        """The managers that will be asked, best first."""
        return list(self._managers)

    def _dispatch(self, method: str, call: Callable[[HardwareManager], T]) -> T:
        for manager in self._managers:
            try:
                return call(manager)
            except IncompatibleHardwareMethodError:
                continue
        raise IncompatibleHardwareMethodError(f"no hardware manager implements {method}")

    def list_pci(self) -> list[PciDevice]:
        return self._dispatch("list_pci", lambda m: m.list_pci())

    def list_nics(self) -> list[Nic]:
        return self._dispatch("list_nics", lambda m: m.list_nics())

    def get_cpu(self) -> Cpu:
        return self._dispatch("get_cpu", lambda m: m.get_cpu())

    def get_memory(self) -> Memory:
        return self._dispatch("get_memory", lambda m: m.get_memory())

    def list_disks(self) -> list[Disk]:
        return self._dispatch("list_disks", lambda m: m.list_disks())

    def get_dmi(self) -> Dmi:
        return self._dispatch("get_dmi", lambda m: m.get_dmi())

    def hostname(self) -> str:
        return self._dispatch("hostname", lambda m: m.hostname())

    def inventory(self) -> Inventory:
        """Everything at once. A method no manager implements leaves its field empty."""
        nics = self._optional("list_nics", lambda m: m.nic_report(), NicReport())
        return Inventory(
            hostname=self._optional("hostname", lambda m: m.hostname(), ""),
            pci=self._optional("list_pci", lambda m: m.list_pci(), []),
            interfaces=nics.interfaces,
            excluded_interfaces=nics.excluded,
            cpu=self._optional("get_cpu", lambda m: m.get_cpu(), Cpu()),
            memory=self._optional("get_memory", lambda m: m.get_memory(), Memory()),
            disks=self._optional("list_disks", lambda m: m.list_disks(), []),
            dmi=self._optional("get_dmi", lambda m: m.get_dmi(), None),
        )

    def _optional(self, method: str, call: Callable[[HardwareManager], T], default: T) -> T:
        try:
            return self._dispatch(method, call)
        except IncompatibleHardwareMethodError:
            return default
