"""The pure half of the burn-in scan (seed 000, DESIGN §5): compare, entries, documents.

Nothing here does I/O, so every rule of the MES contract is tested exhaustively
without a server (the MES record itself is parsed in
:mod:`hwfleet.integrations.mes_records`):

* ``macaddr`` in an entry keeps the spelling the side that reported it used
  (the device for local MACs, the MES for MES-only ones).
* Interfaces are matched by MAC only, so a renamed interface still passes.
* ``sn`` keeps the JSON type the device reported; ``operationid`` is an int.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from hwfleet.integrations.mes_records import MacEntry, MesRecord
from hwfleet.types import JsonObject, Serial

PASS = "1"  # noqa: S105 (a scan status, not a password)
FAIL = "0"
NOT_REGISTERED = "Device is not registered"


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
