"""In-band ``decom.firmware_secure``: firmware installed on the device itself through fwupd.

A node without a BMC can still be updated from its running OS when fwupd is installed:
``fwupdtool`` (the daemon-less tool of Debian's ``fwupd`` package) lists the devices it
can update and installs a firmware cabinet (``.cab``) on one. The spec is the BMC one:
``{"firmware": [{"component", "version", "image", "sha256"}]}``; a component names a fwupd
device by its DeviceId, its name, or one of its GUIDs. BIOS settings are not applied
in-band (use the node's BMC); a spec that asks for them is refused before anything runs.

Every image is downloaded and its SHA-256 checked before the first install (one bad image
changes nothing). After installing, the version is read back: a device now at the version
asked for is ``changed``; one still at the old version whose update fwupd records as
successful (its history), or that says it needs a reboot, is ``pending`` (it switches at
the next reboot or re-enumeration); anything else fails the task naming it.

Without fwupd the command is refused, saying so: nothing is pretended.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from hwfleet.protocol.firmware import SHA256, FirmwareSpec, FirmwareTarget, convert_spec

TOOL = "fwupdtool"
#: Extra fwupdtool arguments, e.g. ``--plugins test`` to enable fwupd's test device.
ARGS_ENV = "HWFLEET_FWUPD_ARGS"
#: Largest cabinet the agent downloads.
MAX_IMAGE = 1 << 30
#: Seconds one fwupdtool run may take (an install flashes the device).
RUN_TIMEOUT = 1800.0

Report = Callable[[float, float | None], Awaitable[None]]


class FwupdError(Exception):
    """fwupd is missing, refused, or the update did not end as asked."""


class Device(msgspec.Struct, kw_only=True):
    device_id: str
    name: str
    version: str
    guids: list[str]
    flags: list[str]

    def matches(self, component: str) -> bool:
        return component in (self.device_id, self.name) or component.lower() in self.guids


def parse_spec(raw: Any) -> FirmwareSpec:
    try:
        spec = convert_spec(raw)
    except ValueError as exc:
        raise FwupdError(str(exc)) from None
    if spec.bios:
        raise FwupdError(
            "BIOS settings are not applied in-band (fwupd): give the node a BMC "
            "(`hwfleet bmc set`) and the controller applies them through it"
        )
    if not spec.firmware:
        raise FwupdError("the spec names no firmware")
    return spec


class Fwupd:
    """``fwupdtool`` on this machine."""

    def __init__(
        self, tool: str, extra: list[str] | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.tool = tool
        self.extra = extra or []
        #: Extra environment (tests point FWUPD_SYSCONFDIR at a config enabling test devices).
        self.env = env

    @classmethod
    def find(cls) -> Fwupd:
        tool = shutil.which(TOOL)
        if tool is None:
            raise FwupdError(
                f"fwupd is not installed on this device ({TOOL} not found): nothing was "
                "changed; install the fwupd package, or give the node a BMC (`hwfleet bmc set`)"
            )
        return cls(tool, os.environ.get(ARGS_ENV, "").split())

    async def _run(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            self.tool,
            *self.extra,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=None if self.env is None else {**os.environ, **self.env},
        )
        try:
            async with asyncio.timeout(RUN_TIMEOUT):
                out, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise FwupdError(f"{TOOL} {args[0]} did not finish in {RUN_TIMEOUT:.0f} s") from None
        if proc.returncode != 0:
            detail = (err or out).decode(errors="replace").strip().splitlines()
            raise FwupdError(f"{TOOL} {args[0]} failed: {' '.join(detail[-3:])[:300]}")
        return out.decode(errors="replace")

    async def _json(self, command: str) -> dict[str, Any]:
        text = await self._run(command, "--json")
        try:
            body = json.loads(text[text.index("{") :])
        except ValueError:
            raise FwupdError(f"{TOOL} {command} did not answer JSON") from None
        return body if isinstance(body, dict) else {}

    async def devices(self) -> list[Device]:
        body = await self._json("get-devices")
        found: list[Device] = []
        stack = list(body.get("Devices") or [])
        while stack:
            d = stack.pop(0)
            if not isinstance(d, dict):
                continue
            stack += d.get("Children") or []
            found.append(
                Device(
                    device_id=str(d.get("DeviceId") or ""),
                    name=str(d.get("Name") or ""),
                    version=str(d.get("Version") or ""),
                    guids=[str(g).lower() for g in d.get("Guid") or []],
                    flags=[str(f) for f in d.get("Flags") or []],
                )
            )
        return found

    async def installed(self, device_id: str, version: str) -> bool:
        """fwupd's history records ``version`` installed on the device successfully."""
        for d in (await self._json("get-history")).get("Devices") or []:
            if not isinstance(d, dict) or d.get("DeviceId") != device_id:
                continue
            releases = d.get("Releases") or []
            versions = {str(r.get("Version")) for r in releases if isinstance(r, dict)}
            if d.get("UpdateState") in (2, "success") and version in versions:
                return True
        return False

    async def install(self, cabinet: Path, device_id: str) -> None:
        # --no-reboot-check: the agent reports a pending reboot instead of fwupd refusing.
        await self._run("install", str(cabinet), device_id, "--no-reboot-check", "--force")


async def fetch(url: str, sha256: str, into: Path) -> Path:
    """Download ``url`` to ``into`` and check its SHA-256 (raise before anything installs)."""
    import httpx

    path = into / (hashlib.sha256(url.encode()).hexdigest()[:16] + ".cab")
    digest, size = hashlib.sha256(), 0
    try:
        async with (
            httpx.AsyncClient(timeout=60, follow_redirects=True) as client,
            client.stream("GET", url) as r,
        ):
            r.raise_for_status()
            with path.open("wb") as f:
                async for chunk in r.aiter_bytes(1 << 20):
                    size += len(chunk)
                    if size > MAX_IMAGE:
                        raise FwupdError(f"image {url} is larger than {MAX_IMAGE} bytes")
                    digest.update(chunk)
                    f.write(chunk)
    except httpx.HTTPError as exc:
        raise FwupdError(f"cannot fetch image {url}: {exc}") from None
    if digest.hexdigest() != sha256.lower():
        raise FwupdError(
            f"image {url} has SHA-256 {digest.hexdigest()}, not {sha256.lower()}: "
            "nothing was changed"
        )
    return path


async def firmware_secure(
    fwupd: Fwupd, spec: FirmwareSpec, *, dry_run: bool, report: Report
) -> dict[str, Any]:
    """Plan against fwupd's devices; then fetch, check, install and read back."""
    devices = await fwupd.devices()
    plan: list[tuple[FirmwareTarget, Device]] = []
    matched: list[dict[str, Any]] = []
    for t in spec.firmware:
        device = next((d for d in devices if d.matches(t.component)), None)
        if device is None:
            known = ", ".join(sorted(d.name for d in devices if "updatable" in d.flags)) or "none"
            raise FwupdError(f"fwupd has no device {t.component!r} (updatable: {known})")
        if device.version == t.version:
            matched.append({"firmware": t.component, "version": device.version})
            continue
        if not t.image or not SHA256.match(t.sha256):
            raise FwupdError(
                f"{t.component}: 'image' and 'sha256' (64 hex digits) are required to go to "
                f"{t.version}, so the image can be checked before it is installed"
            )
        plan.append((t, device))
    steps = [{"component": t.component, "from": d.version, "to": t.version} for t, d in plan]
    if dry_run:
        return {"dry_run": True, "plan": {"firmware": steps}, "changed": [], "matched": matched}
    await report(5.0, None)
    with tempfile.TemporaryDirectory(prefix="hwfleet-fw-") as tmp:
        cabinets = [await fetch(t.image, t.sha256, Path(tmp)) for t, _ in plan]
        await report(10.0, None)
        for i, ((_t, device), cab) in enumerate(zip(plan, cabinets, strict=True)):
            await fwupd.install(cab, device.device_id)
            await report(10.0 + 80.0 * (i + 1) / len(plan), None)
    after = await fwupd.devices()
    changed, pending, left = [], [], []
    for t, device in plan:
        now = next((d for d in after if d.device_id == device.device_id), None)
        entry = {"firmware": t.component, "from": device.version, "to": t.version}
        if now is not None and now.version == t.version:
            changed.append(entry)
        elif (now is not None and "needs-reboot" in now.flags) or await fwupd.installed(
            device.device_id, t.version
        ):
            # Written and recorded by fwupd, but the device still runs the old version
            # (it switches at the next reboot or re-enumeration): said so, not "changed".
            pending.append(entry)
        else:
            left.append(f"{t.component} is at {now.version if now else '?'}, not {t.version}")
    if left:
        raise FwupdError("after the update: " + "; ".join(left))
    return {"dry_run": False, "changed": changed, "pending": pending, "matched": matched}
