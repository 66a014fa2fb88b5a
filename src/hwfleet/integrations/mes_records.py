"""The MES's record of a serial (DESIGN §5): MAC spellings and the ``getById`` answer, parsed.

Pure code, no I/O: :func:`parse_mes_record` turns the body of a
``GET deviceInfo/getById`` answer into a :class:`MesRecord` (registered or not,
and the union of its rows' MACs) or a :class:`MesFormatError` saying what is
off. MACs compare case-insensitively and regardless of separator
(``E0-18-7D-…`` equals ``e0:18:7d:…``); a :class:`MacEntry` keeps the spelling
of the side that reported it. Several ``info`` rows for one serial are a
union (the reference let the last row overwrite the others: a defect DESIGN §1
tells us not to repeat). The scan's compare (:mod:`hwfleet.controller.scan.compare`)
scores a device's MACs against such a record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hwfleet.errors import IntegrationError
from hwfleet.protocol.mac import normalize_mac
from hwfleet.types import Serial


class MesFormatError(IntegrationError, ValueError):
    """The MES answered something that is not the documented record shape."""


@dataclass(frozen=True, slots=True)
class MacEntry:
    """One interface and its MAC, as a side reported it."""

    interface: str
    macaddr: str
    #: The canonical spelling: computed once, since a comparison looks it up several times.
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """ValueError (saying why) unless ``macaddr`` spells a MAC address."""
        object.__setattr__(self, "key", normalize_mac(self.macaddr))


@dataclass(frozen=True, slots=True)
class MesRecord:
    """What the MES knows about one serial: registered or not, and its MACs (union of rows)."""

    registered: bool
    macs: tuple[MacEntry, ...] = ()
    reason: str = ""


def _serial_text(value: object) -> str:
    return str(value).strip().lower()


def _is_object(value: object) -> bool:
    # Decoded JSON objects are dicts: skip the ABC machinery of Mapping for them (once per
    # row and per MAC of every device of a scan).
    return isinstance(value, (dict, Mapping))  # dict first: checked in order


def parse_mes_record(sn: Serial, body: Any) -> MesRecord:
    """Interpret a ``GET deviceInfo/getById`` answer for ``sn``; MesFormatError says what is off."""
    if not _is_object(body) or "info" not in body:
        raise MesFormatError(f"MES record for sn {sn!r} is not an object with an 'info' field")
    info = body["info"]
    if isinstance(info, str):
        return MesRecord(registered=False, reason=f"MES: {info}")
    if not isinstance(info, list):
        raise MesFormatError(
            f"MES record for sn {sn!r}: 'info' is {type(info).__name__}, not a list or a message"
        )
    rows: list[Mapping[str, Any]] = []
    for index, row in enumerate(info):
        if not _is_object(row):
            raise MesFormatError(f"MES record for sn {sn!r}: info[{index}] is not an object")
        rows.append(row)
    if not rows:
        return MesRecord(registered=False, reason=f"MES has no record for sn {sn!r}")
    # Prefer the rows that name this serial (a MES that searches loosely may add others);
    # when none spells it our way, trust the MES's answer to the query as a whole.
    wanted = _serial_text(sn)
    own = [r for r in rows if "serialNo" not in r or _serial_text(r["serialNo"]) == wanted]
    rows = own or rows
    seen: set[str] = set()
    macs: list[MacEntry] = []
    for row in rows:
        items = row.get("macInfo", row.get("macinfo", []))
        if not isinstance(items, list):
            raise MesFormatError(f"MES record for sn {sn!r}: 'macInfo' is not a list")
        for item in items:
            if not _is_object(item):
                raise MesFormatError(f"MES record for sn {sn!r}: a macInfo item is not an object")
            mac = item.get("macaddr")
            try:
                if not isinstance(mac, str):
                    normalize_mac(mac)  # raises, saying what it got: str(mac) would hide it
                entry = MacEntry(interface=str(item.get("interface") or ""), macaddr=str(mac))
            except ValueError as exc:
                raise MesFormatError(f"MES record for sn {sn!r}: {exc}") from None
            if entry.key in seen:
                continue  # the same MAC in two rows is one MAC
            seen.add(entry.key)
            macs.append(entry)
    return MesRecord(registered=True, macs=tuple(macs))
