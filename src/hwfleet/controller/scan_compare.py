"""The pure half of the burn-in scan (seed 000, DESIGN §5): MACs, MES records, compare, documents.

Nothing here does I/O, so every rule of the MES contract is tested exhaustively
without a server:

* MACs compare case-insensitively and regardless of separator (``E0-18-7D-…``
  equals ``e0:18:7d:…``); ``macaddr`` in an entry keeps the spelling the side
  that reported it used (the device for local MACs, the MES for MES-only ones).
* Interfaces are matched by MAC only, so a renamed interface still passes.
* Several ``info`` rows for one serial are a union (the reference let the last
  row overwrite the others: a defect DESIGN §1 tells us not to repeat).
* ``sn`` keeps the JSON type the device reported; ``operationid`` is an int.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hwfleet.errors import IntegrationError
from hwfleet.protocol.mac import normalize_mac
from hwfleet.types import JsonObject, Serial

PASS = "1"  # noqa: S105 (a scan status, not a password)
FAIL = "0"
NOT_REGISTERED = "Device is not registered"


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


def _entry(sn: Serial, macinfo: list[JsonObject], error: str | None) -> JsonObject:
    passed = bool(macinfo) and error is None and all(m["scanstatus"] == PASS for m in macinfo)
    # Key order follows the seed's example: macinfo, sn, result.
    entry: JsonObject = {"macinfo": macinfo, "sn": sn, "result": PASS if passed else FAIL}
    if error is not None:
        entry["error"] = error
    elif not macinfo:
        entry["error"] = "no MAC addresses to compare (neither the device nor the MES lists any)"
    return entry


def _mac(interface: str, macaddr: str, status: str) -> JsonObject:
    return {"interface": interface, "macaddr": macaddr, "scanstatus": status}


def compare(sn: Serial, local: Sequence[MacEntry], mes: MesRecord) -> JsonObject:
    """The scaninfo entry for one device: local MACs scored, then MES-only MACs as ``"0"``."""
    if not mes.registered:
        macinfo = [_mac(m.interface, m.macaddr, FAIL) for m in local]
        return _entry(sn, macinfo, mes.reason or NOT_REGISTERED)
    listed = {m.key for m in mes.macs}
    macinfo = [_mac(m.interface, m.macaddr, PASS if m.key in listed else FAIL) for m in local]
    present = {m.key for m in local}
    macinfo += [_mac(m.interface, m.macaddr, FAIL) for m in mes.macs if m.key not in present]
    return _entry(sn, macinfo, None)


def failed_entry(sn: Serial, reason: str, local: Sequence[MacEntry] = ()) -> JsonObject:
    """An entry for a device we could not check (no reply, bad reply, MES error)."""
    return _entry(sn, [_mac(m.interface, m.macaddr, FAIL) for m in local], reason)


@dataclass(slots=True)
class ScanOutcome:
    """The deviceScan document and what follows from it."""

    document: JsonObject
    passed: list[Serial] = field(default_factory=list)
    internal_errors: list[str] = field(default_factory=list)

    def pair_body(self) -> JsonObject:
        return {"operationid": self.document["operationid"], "snArray": list(self.passed)}

    def notification(self) -> JsonObject:
        """Seed 000: ``"N devices passed scanning"``, or a status naming the internal error."""
        operationid = self.document["operationid"]
        status = f"{len(self.passed)} devices passed scanning"
        if self.internal_errors:
            status = f"internal error: {summarize(self.internal_errors)} ({status})"
        return {"id": str(operationid), "status": status}


def summarize(errors: Sequence[str], limit: int = 200) -> str:
    """One readable sentence for many internal errors: an outage repeats one error per device.

    The first error, how many devices it hit, and how many other distinct errors there
    were (each device's own words stay in its entry of the document).
    """
    counts: dict[str, int] = {}
    for error in errors:
        counts[error] = counts.get(error, 0) + 1
    first, hits = next(iter(counts.items()))
    text = first if len(first) <= limit else first[: limit - 1] + "…"
    if hits > 1:
        text += f", for {hits} devices"
    others = len(counts) - 1
    if others:
        text += f", and {others} other error{'s' if others > 1 else ''}"
    return text


def build_document(
    operationid: int,
    entries: Iterable[JsonObject],
    *,
    internal_errors: Iterable[str] = (),
) -> ScanOutcome:
    """Assemble the seed-000 deviceScan document; ``pairInfo`` stays ``[]`` like the reference."""
    scaninfo = list(entries)
    passed = [e["sn"] for e in scaninfo if e.get("result") == PASS]
    document: JsonObject = {"operationid": int(operationid), "pairInfo": [], "scaninfo": scaninfo}
    return ScanOutcome(document=document, passed=passed, internal_errors=list(internal_errors))
