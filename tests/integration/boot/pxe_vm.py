"""A qemu VM PXE-booting from ``hwfleet server`` on a namespaced network, until it enrols.

``hwfleet server --boot-interface kea0`` runs inside the server namespace (Kea, TFTP, the
REST API with ``/boot/``, the agent gateway, all on 10.231.77.1). The VM's NIC is a tap
device in the switch namespace, on the bridge: its iPXE ROM (Debian's ipxe-qemu) takes a
lease from Kea, chains ``/boot/ipxe``, gets the discovery script (token and the controller
CA's fingerprint on the kernel command line), loads the discovery kernel and initramfs
over HTTP, and the agent inside enrolls and reports its inventory. Nothing touches the
machine's own interfaces. Used by tests/integration/boot/test_qemu_pxe.py and by
``bench/boot.py --vm`` (power-on to enrolment).

The discovery environment is built first (``build_discovery``, a minute or two) unless
``HWFLEET_TEST_DISCOVERY`` names a directory holding a ``vmlinuz`` and ``initrd.img``
built from this tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import service_missing
from tests.integration.boot.bootnet import SERVER_IF, SERVER_IP, SUBNET, boot_network, ip, run_in

from hwfleet.boot.discovery_image import build_discovery

QEMU = "qemu-system-x86_64"
BIOS = Path("/usr/share/seabios/bios-256k.bin")
ROM = Path("/usr/lib/ipxe/qemu/pxe-e1000.rom")
VM_MAC = "52:54:00:77:00:01"
API = f"http://{SERVER_IP}:8780"
#: Power-on to enrolment under TCG on a loaded 2-core machine: minutes, bounded.
BOOT_DEADLINE = 900.0

FETCH = """
import json, sys, urllib.request
api, token, path = sys.argv[1:]
req = urllib.request.Request(api + path, headers={"Authorization": "Bearer " + token})
print(json.dumps(json.load(urllib.request.urlopen(req, timeout=20))))
"""


def _discovery(tmp: Path) -> Path:
    given = os.environ.get("HWFLEET_TEST_DISCOVERY")
    if given:
        return Path(given)
    for tool in ("apt-get", "dpkg-deb", "cpio", "python3.11"):
        if shutil.which(tool) is None:
            service_missing(f"{tool} is needed to build the discovery environment")
    build_discovery(tmp / "discovery")
    return tmp / "discovery"


async def _api(ns: str, token: str, path: str) -> Any:
    code, out = await run_in(ns, sys.executable, "-c", FETCH, API, token, path, timeout=60)
    assert code == 0, out.decode()
    return json.loads(out)


async def _wait_line(stream: asyncio.StreamReader, needle: str, log: Path, timeout: float) -> None:
    """Copy the server's output to ``log`` until a line holds ``needle``."""
    async with asyncio.timeout(timeout):
        with log.open("ab") as sink:
            while line := await stream.readline():
                sink.write(line)
                if needle in line.decode(errors="replace"):
                    return
    raise AssertionError(f"the server ended before {needle!r}: see {log}")


async def _drain(stream: asyncio.StreamReader, log: Path) -> None:
    with log.open("ab") as sink:
        while line := await stream.readline():
            sink.write(line)
            sink.flush()


def require() -> None:
    for need in (QEMU, "kea-dhcp4"):
        if shutil.which(need) is None:
            service_missing(f"{need} is not installed (qemu-system-x86, kea-dhcp4-server)")
    for path in (BIOS, ROM):
        if not path.is_file():
            service_missing(f"{path} is missing (Debian seabios, ipxe-qemu)")
    if not Path("/dev/net/tun").exists():
        service_missing("/dev/net/tun is missing: a tap device needs it")


def _place(built: Path, target: Path) -> None:
    """The built files inside the boot files directory (a link out of it would be refused)."""
    target.mkdir(parents=True)
    for name in ("vmlinuz", "initrd.img"):
        shutil.copy2(built / name, target / name)


def _tail(path: Path, size: int = 4000) -> str:
    return path.read_text(errors="replace")[-size:] if path.exists() else ""


@dataclass
class PxeRun:
    seconds: float  # power-on to enrolment
    device: dict[str, Any]
    detail: dict[str, Any]
    events: list[dict[str, Any]]
    console: str
    fingerprint: str


async def pxe_boot(tmp_path: Path, accel: str = "tcg", proxy: bool = False) -> PxeRun:
    """Boot a VM from a fresh ``hwfleet server`` until it enrols; what it became.

    ``proxy``: the server runs as proxyDHCP (``--dhcp-proxy``, no Kea) and busybox udhcpd,
    the site's server, gives the VM its addresses (iPXE's and the discovery kernel's)."""
    require()
    files = tmp_path / "files"
    _place(_discovery(tmp_path), files / "discovery")
    data = tmp_path / "controller"
    with boot_network() as net:
        site = await net.site_dhcp(tmp_path) if proxy else None
        dhcp = ["--dhcp-proxy"] if proxy else ["--dhcp-range", f"{SUBNET}.100-{SUBNET}.150"]
        env = {
            **os.environ,
            "HWFLEET_BOOT_FILES_DIR": str(files),
            # An emulated machine's TLS handshake and enrolment take seconds, not milliseconds.
            "HWFLEET_HANDSHAKE_TIMEOUT": "120",
            "HWFLEET_DISCOVERY_INTERFACE": SERVER_IF,
        }
        server = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", net.server, sys.executable, "-m", "hwfleet", "server",
            "--data-dir", str(data), "--bus", "memory://",
            "--agent-listen", f"{SERVER_IP}:7800", "--api-listen", f"{SERVER_IP}:8780",
            "--boot-interface", SERVER_IF, *dhcp,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
        )  # fmt: skip
        assert server.stdout is not None
        server_log = tmp_path / "server.log"
        qemu: asyncio.subprocess.Process | None = None
        draining: asyncio.Task[None] | None = None
        try:
            await _wait_line(server.stdout, "REST API", server_log, 120)
            draining = asyncio.create_task(_drain(server.stdout, server_log))
            token = (data / "operator.token").read_text().strip()
            ip("-n", net.switch, "tuntap", "add", "dev", "vmtap0", "mode", "tap")
            ip("-n", net.switch, "link", "set", "vmtap0", "master", "br0", "up")
            console = tmp_path / "console.log"
            powered_on = time.monotonic()
            qemu = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", net.switch, QEMU, "-machine", "pc", "-accel", accel,
                "-m", "1024", "-smp", "1", "-display", "none", "-vga", "none",
                "-bios", str(BIOS), "-serial", f"file:{console}", "-no-reboot",
                "-netdev", "tap,id=n0,ifname=vmtap0,script=no,downscript=no",
                "-device", f"e1000,netdev=n0,mac={VM_MAC},romfile={ROM}", "-boot", "n",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            device = await _enrolled(net.server, token, powered_on, qemu, console)
            seconds = time.monotonic() - powered_on
            detail = await _api(net.server, token, f"/api/v1/devices/{device['uuid']}")
            events = _items(await _api(net.server, token, "/api/v1/events?limit=1000"))
            fingerprint = _fingerprint(server_log)
            return PxeRun(seconds, device, detail, events, _tail(console, 10**7), fingerprint)
        finally:
            if qemu is not None and qemu.returncode is None:
                qemu.kill()
                await qemu.wait()
            if server.returncode is None:
                server.terminate()
                try:
                    await asyncio.wait_for(server.wait(), 30)
                except TimeoutError:
                    server.kill()
                    await server.wait()
            if draining is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(draining, 10)
            if site is not None:
                site.terminate()
                await site.wait()


def _fingerprint(log: Path) -> str:
    for line in log.read_text(errors="replace").splitlines():
        if "controller CA fingerprint" in line:
            return line.rsplit(" ", 1)[-1]
    raise AssertionError(f"the server logged no CA fingerprint: see {log}")


def _items(doc: Any) -> list[dict[str, Any]]:
    if isinstance(doc, dict):
        for key in ("events", "items"):
            if isinstance(doc.get(key), list):
                return list(doc[key])
        return []
    return list(doc)


async def _enrolled(
    ns: str, token: str, since: float, qemu: asyncio.subprocess.Process, console: Path
) -> dict[str, Any]:
    """The device the VM became, once enrolled; fails at the deadline or if qemu ends.

    The VM is another machine: the test can only ask the controller, every few seconds,
    until a deadline (no event reaches the test from inside the server's process).
    """
    while time.monotonic() - since < BOOT_DEADLINE:
        if qemu.returncode is not None:
            raise AssertionError(f"qemu ended ({qemu.returncode}): {_tail(console)}")
        for device in await _api(ns, token, "/api/v1/devices"):
            if device.get("enrolled") and device.get("state") != "discovered":
                return dict(device)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(qemu.wait(), 5)
    raise AssertionError(f"no enrolled device after {BOOT_DEADLINE:g} s:\n{_tail(console)}")
