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
already matched, and fails naming whatever did not end as asked.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

import msgspec

from hwfleet.oob.driver import BmcDriver, BmcError

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
#: Largest firmware image the controller will hash (a BMC image is tens of MiB).
MAX_IMAGE = 1 << 30


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


def parse_spec(raw: Any) -> FirmwareSpec:
    try:
        return msgspec.convert(raw, FirmwareSpec)
    except (msgspec.ValidationError, ValueError) as exc:
        raise BmcError("bad_input", f"bad firmware spec: {exc}") from None


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
            if not _SHA256.match(t.sha256):
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


def apply(driver: BmcDriver, spec: FirmwareSpec, *, dry_run: bool, settle: float) -> dict[str, Any]:
    """Plan, then (unless ``dry_run``) check images, install, set BIOS and verify."""
    steps = plan(driver, spec)
    if dry_run:
        return {"dry_run": True, "plan": steps, "changed": [], "matched": steps["matched"]}
    images = {t.component: t for t in spec.firmware}
    for step in steps["firmware"]:
        check_image(step["image"], images[step["component"]].sha256, driver.timeout)
    for step in steps["firmware"]:
        driver.update_firmware(step["image"], step["component"])
    if steps["bios"]:
        driver.set_bios({s["attribute"]: s["to"] for s in steps["bios"]})
    left = _verify(driver, spec, settle)
    if left:
        raise BmcError("protocol", "after the update: " + "; ".join(left))
    changed = [
        {"firmware": s["component"], "from": s["from"], "to": s["to"]} for s in steps["firmware"]
    ]
    changed += [{"bios": s["attribute"], "from": s["from"], "to": s["to"]} for s in steps["bios"]]
    return {"dry_run": False, "changed": changed, "matched": steps["matched"]}


def _verify(driver: BmcDriver, spec: FirmwareSpec, settle: float) -> list[str]:
    """What still differs from the spec, re-reading until ``settle`` seconds pass."""
    deadline = time.monotonic() + settle
    while True:
        left = []
        current = {f.component: f.version for f in driver.firmware()} if spec.firmware else {}
        for t in spec.firmware:
            if current.get(t.component) != t.version:
                left.append(f"{t.component} is at {current.get(t.component)}, not {t.version}")
        bios = driver.bios() if spec.bios else {}
        for name, value in spec.bios.items():
            if bios.get(name) != value:
                left.append(f"BIOS {name} is {bios.get(name)!r}, not {value!r} (pending a reboot?)")
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(1.0)  # a BMC applies updates in its own time: re-read it once a second
