"""Whose reply is this? The rules that keep one device from answering for another.

A scan reply is counted for one unit, and its entry in the deviceScan
document carries that unit's serial; the MES pairs what passes. So a reply
must not be able to put a serial on the document that is not its sender's.

* **Enrolled devices** (the reply names a uuid — authenticated by the sender's
  broker user with per-device credentials, or by the TLS connection the stream
  gateway relayed it from): the serial must be the one the device enrolled
  with, i.e. the one the scan recorded for it when it started. A different
  serial is refused. A device the scan does not expect (it was not online when
  the scan started) is refused too: *the expected set is fixed at the start*,
  and a late device is scanned by the next scan.
* **Legacy devices** (no uuid: seed 000's reference client, which has no
  enrollment): the serial they report is all there is. Such a reply is
  refused when the serial belongs to an enrolled device (it cannot stand in
  for that unit), or when ``scan_legacy`` is off; otherwise it counts for the
  device ``legacy_uuid(serial)``, so two replies for one serial are one unit.

Serials compare as text, trimmed and case-insensitively (``1001`` and
``"1001"`` are one unit), as the MES comparison does.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hwfleet.types import Serial

if TYPE_CHECKING:
    from hwfleet.controller.scan.watch import ScanState

#: The namespace of legacy devices' uuids (uuid5 of their serial): fixed for ever.
LEGACY_NAMESPACE = uuidlib.UUID("5c0e9d8e-27a4-4b43-9a59-7d3c1b0e5a11")


def serial_key(sn: Serial) -> str:
    """How two serials are found to be one unit's."""
    return str(sn).strip().lower()


def legacy_uuid(sn: Serial) -> str:
    """The device uuid a legacy (unenrolled) device is recorded under: one per serial."""
    return str(uuidlib.uuid5(LEGACY_NAMESPACE, serial_key(sn)))


@dataclass(frozen=True, slots=True)
class Admitted:
    """The reply counts for ``device_uuid``, reported with ``sn``."""

    device_uuid: str
    sn: Serial | None
    legacy: bool = False


@dataclass(frozen=True, slots=True)
class Refused:
    """The reply is refused (recorded and announced, never stored as a result)."""

    reason: str
    device_uuid: str | None
    sn: Serial | None


def admit(
    state: ScanState,
    device_uuid: str | None,
    sn: Serial | None,
    *,
    legacy_allowed: bool,
    agent_serials: Mapping[str, str],
) -> Admitted | Refused | None:
    """Apply the rules above; None when the reply names neither a device nor a serial.

    ``agent_serials`` maps :func:`serial_key` of every enrolled device's serial to its uuid.
    """
    op = state.operationid
    if device_uuid:
        if device_uuid not in state.expected:
            return Refused(
                f"device {device_uuid} is not expected by scan {op} (it was not online when "
                "the scan started); the next scan includes it",
                device_uuid,
                sn,
            )
        enrolled = state.expected[device_uuid]
        if sn is not None and enrolled is not None and serial_key(sn) != serial_key(enrolled):
            return Refused(
                f"device {device_uuid} enrolled with serial {enrolled!r} but answered scan "
                f"{op} with serial {sn!r}",
                device_uuid,
                sn,
            )
        return Admitted(device_uuid, sn if sn is not None else enrolled)
    if sn is None:
        return None
    owner = agent_serials.get(serial_key(sn))
    if owner is not None:
        return Refused(
            f"a reply without a device identity claims serial {sn!r}, which is enrolled "
            f"device {owner}'s; only that device can answer for it",
            None,
            sn,
        )
    if not legacy_allowed:
        return Refused(
            f"reply from an unenrolled device (serial {sn!r}) refused: scanning legacy "
            "devices is off (--scan-legacy off)",
            None,
            sn,
        )
    return Admitted(legacy_uuid(sn), sn, legacy=True)
