"""Chassis and firmware identity from ``/sys/class/dmi/id`` (absent on most non-x86 boards)."""

from __future__ import annotations

import os
from pathlib import Path

from hwfleet.agent.hardware._sysfs import read_str, under
from hwfleet.protocol.inventory import Dmi

_FIELDS = (
    "sys_vendor",
    "product_name",
    "product_serial",
    "product_uuid",
    "board_vendor",
    "board_name",
    "board_serial",
    "bios_vendor",
    "bios_version",
    "bios_date",
    "chassis_type",
)

#: Placeholders firmware vendors leave in unprogrammed fields; reporting them misleads.
_PLACEHOLDERS = frozenset(
    {"to be filled by o.e.m.", "default string", "not specified", "none", "0123456789"}
)


def get_dmi(root: Path | str = "/") -> Dmi | None:
    """The DMI identity, or None when the kernel exports no DMI table.

    Files only root may read (serials, uuid) are skipped for other users.
    """
    base = under(root, "/sys/class/dmi/id")
    if not os.path.isdir(base):
        return None
    values: dict[str, str] = {}
    for field in _FIELDS:
        value = read_str(os.path.join(base, field))
        if value is not None and value.lower() not in _PLACEHOLDERS:
            values[field] = value
    return Dmi(**values)
