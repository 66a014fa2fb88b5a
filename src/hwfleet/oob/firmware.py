"""``decom.firmware_secure`` through the BMC: bring firmware versions and BIOS settings to a spec.

Spec (seed 001's method, DESIGN §15)::

    {"bios": {"ProcTurboMode": "Disabled"},
     "firmware": [{"component": "BIOS", "version": "1.2.0",
                   "image": "https://repo/bios-1.2.0.bin", "sha256": "<hex>"}]}

The plan compares the spec with what the BMC reports (Redfish FirmwareInventory and
Bios); ``dry_run`` stops there. Otherwise every image to install is downloaded and its
SHA-256 checked *before* anything is changed (one bad image changes nothing), then each
update goes through UpdateService.SimpleUpdate and the BIOS attributes through the Bios
settings, and finally everything is read back: the report lists what changed, what
already matched, and fails naming whatever did not end as asked. Those steps run as a
tracked task (:mod:`hwfleet.oob.fwjob`); this module holds the parts that talk to one
driver.
"""

from __future__ import annotations

import hashlib
from typing import Any

from hwfleet.oob.driver import BmcDriver, BmcError
from hwfleet.protocol.firmware import SHA256, FirmwareSpec, convert_spec

#: Largest firmware image the controller will hash (a BMC image is tens of MiB).
MAX_IMAGE = 1 << 30


def parse_spec(raw: Any) -> FirmwareSpec:
    try:
        return convert_spec(raw)
    except ValueError as exc:
        raise BmcError("bad_input", str(exc)) from None


def plan(driver: BmcDriver, spec: FirmwareSpec) -> dict[str, Any]:
    """What would change: ``{"firmware": [...], "bios": [...], "matched": [...]}``."""
    current = {f.component: f.version for f in driver.firmware()} if spec.firmware else {}
    bios = driver.bios() if spec.bios else {}
    out: dict[str, Any] = {"firmware": [], "bios": [], "matched": []}
    for t in spec.firmware:
        if t.component not in current:
            known = ", ".join(sorted(current)) or "none"
            raise BmcError(
                "bad_input",
                f"the BMC has no firmware component {t.component!r} (it reports: {known})",
            )
        have = current[t.component]
        if have == t.version:
            out["matched"].append({"firmware": t.component, "version": have})
        else:
            if not t.image:
                raise BmcError("bad_input", f"{t.component} needs an 'image' to go to {t.version}")
            if not SHA256.match(t.sha256):
                raise BmcError(
                    "bad_input",
                    f"{t.component}: 'sha256' (64 hex digits) is required "
                    "so the image can be checked before it is installed",
                )
            out["firmware"].append(
                {"component": t.component, "from": have, "to": t.version, "image": t.image}
            )
    for name, value in spec.bios.items():
        if name not in bios:
            raise BmcError("bad_input", f"the BIOS has no attribute {name!r}")
        if bios[name] == value:
            out["matched"].append({"bios": name, "value": value})
        else:
            out["bios"].append({"attribute": name, "from": bios[name], "to": value})
    return out


def check_image(url: str, sha256: str, timeout: float) -> None:
    """Download ``url`` and compare its SHA-256; raise before anything is installed."""
    import httpx

    digest = hashlib.sha256()
    size = 0
    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as r:
            r.raise_for_status()
            for chunk in r.iter_bytes(1 << 20):
                size += len(chunk)
                if size > MAX_IMAGE:
                    raise BmcError("bad_input", f"image {url} is larger than {MAX_IMAGE} bytes")
                digest.update(chunk)
    except httpx.HTTPError as exc:
        raise BmcError("bad_input", f"cannot fetch image {url}: {exc}") from None
    if digest.hexdigest() != sha256.lower():
        raise BmcError(
            "bad_input",
            f"image {url} has SHA-256 {digest.hexdigest()}, not {sha256.lower()}: "
            "nothing was changed",
        )


def dry_run(driver: BmcDriver, spec: FirmwareSpec) -> dict[str, Any]:
    """The report of a dry run: the plan, nothing changed."""
    steps = plan(driver, spec)
    return {"dry_run": True, "plan": steps, "changed": [], "matched": steps["matched"]}


def changes(steps: dict[str, Any]) -> list[dict[str, Any]]:
    """What a plan changed, as the report lists it."""
    fw = steps["firmware"]
    out = [{"firmware": s["component"], "from": s["from"], "to": s["to"]} for s in fw]
    out += [{"bios": s["attribute"], "from": s["from"], "to": s["to"]} for s in steps["bios"]]
    return out


def differences(driver: BmcDriver, spec: FirmwareSpec) -> list[str]:
    """What still differs from the spec on the BMC now (empty: all as asked)."""
    left = []
    current = {f.component: f.version for f in driver.firmware()} if spec.firmware else {}
    for t in spec.firmware:
        if current.get(t.component) != t.version:
            left.append(f"{t.component} is at {current.get(t.component)}, not {t.version}")
    bios = driver.bios() if spec.bios else {}
    for name, value in spec.bios.items():
        if bios.get(name) != value:
            left.append(f"BIOS {name} is {bios.get(name)!r}, not {value!r} (pending a reboot?)")
    return left
