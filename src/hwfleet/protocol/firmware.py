"""The ``decom.firmware_secure`` spec (seed 001), shared by the BMC path and the agent's fwupd.

``{"bios": {attribute: value}, "firmware": [{"component", "version", "image", "sha256"}]}``:
the controller applies it through a node's BMC (:mod:`hwfleet.oob.fwjob`), an agent
through fwupd (:mod:`hwfleet.agent.fwupd`). ``sha256`` is required for every image that
would be installed, so it is checked before anything changes.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


class FirmwareTarget(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    component: str
    version: str
    image: str = ""
    sha256: str = ""


class FirmwareSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    bios: dict[str, Any] = msgspec.field(default_factory=dict)
    firmware: list[FirmwareTarget] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.bios and not self.firmware:
            raise ValueError("the spec names no BIOS setting and no firmware")
        for t in self.firmware:
            if not t.component or not t.version:
                raise ValueError("each firmware entry needs 'component' and 'version'")


def convert_spec(raw: Any) -> FirmwareSpec:
    """The spec, or ValueError naming what is wrong with it."""
    try:
        return msgspec.convert(raw, FirmwareSpec)
    except (msgspec.ValidationError, ValueError) as exc:
        raise ValueError(f"bad firmware spec: {exc}") from None
