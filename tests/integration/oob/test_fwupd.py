"""In-band ``decom.firmware_secure`` through fwupd: refused clearly without it; with Debian's
fwupd, against its test plugin's fake device (``fwupdtool --plugins test``)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import service_missing

from hwfleet.agent import fwupd

DEVICE_GUID = "b585990a-003e-5270-89d5-3705a17f9a43"  # fwupd's test plugin device
METAINFO = """<?xml version="1.0" encoding="UTF-8"?>
<component type="firmware">
  <id>org.hwfleet.test.webcam.firmware</id>
  <name>Fake webcam</name>
  <summary>hwfleet test firmware</summary>
  <provides><firmware type="flashed">{guid}</firmware></provides>
  <metadata_license>CC0-1.0</metadata_license>
  <project_license>proprietary</project_license>
  <releases><release urgency="low" version="{version}" date="2026-01-01">
    <description><p>test</p></description></release></releases>
  <custom><value key="LVFS::VersionFormat">triplet</value></custom>
</component>
"""


def tool(tmp: Path) -> fwupd.Fwupd:
    """fwupdtool with only its test plugin, and its test device enabled by a config of our
    own (FWUPD_SYSCONFDIR) and its history kept in the test's directory: nothing of the
    machine's fwupd setup is read or changed."""
    path = shutil.which(fwupd.TOOL)
    if path is None:
        service_missing("fwupd is not installed (Debian package fwupd: scripts/system-packages)")
    conf = tmp / "etc" / "fwupd"
    conf.mkdir(parents=True)
    (conf / "fwupd.conf").write_text("[fwupd]\nTestDevices=true\n")
    (tmp / "var").mkdir()
    env = {"FWUPD_SYSCONFDIR": str(tmp / "etc"), "FWUPD_LOCALSTATEDIR": str(tmp / "var")}
    return fwupd.Fwupd(path, ["--plugins", "test"], env)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A directory served over HTTP on loopback: (base url, directory)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def cabinet(fw: fwupd.Fwupd, into: Path, version: str) -> bytes:
    """A firmware cabinet for the test device, built by fwupdtool itself."""
    major, minor, micro = (int(p) for p in version.split("."))
    work = into / f"build-{version}"
    work.mkdir()
    (work / "firmware.bin").write_text(hex((major << 24) | (minor << 16) | micro))
    (work / "firmware.metainfo.xml").write_text(METAINFO.format(guid=DEVICE_GUID, version=version))
    out = into / f"webcam-{version}.cab"
    subprocess.run(
        [fw.tool, "build-cabinet", str(out), str(work / "firmware.bin"),
         str(work / "firmware.metainfo.xml")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return out.read_bytes()


async def no_report(percent: float, eta: float | None) -> None:
    return None


def test_without_fwupd_the_command_is_refused_saying_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(fwupd.FwupdError, match="fwupd is not installed on this device"):
        fwupd.Fwupd.find()


def test_bios_settings_are_not_applied_in_band() -> None:
    with pytest.raises(fwupd.FwupdError, match="BIOS settings are not applied in-band"):
        fwupd.parse_spec({"bios": {"ProcTurboMode": "Disabled"}})
    with pytest.raises(fwupd.FwupdError, match="names no BIOS setting and no firmware"):
        fwupd.parse_spec({})


async def test_plan_install_and_read_back(served: tuple[str, Path], tmp_path: Path) -> None:
    fw = tool(tmp_path / "fwupd")
    base, root = served
    devices = await fw.devices()
    webcam = next(d for d in devices if DEVICE_GUID in d.guids)
    assert webcam.version == "1.2.2"
    image = cabinet(fw, root, "1.2.4")
    spec = fwupd.parse_spec(
        {"firmware": [{"component": DEVICE_GUID, "version": "1.2.4",
                       "image": f"{base}/webcam-1.2.4.cab",
                       "sha256": hashlib.sha256(image).hexdigest()}]}
    )  # fmt: skip
    plan = await fwupd.firmware_secure(fw, spec, dry_run=True, report=no_report)
    assert plan["plan"]["firmware"] == [{"component": DEVICE_GUID, "from": "1.2.2", "to": "1.2.4"}]

    bad = fwupd.parse_spec(
        {"firmware": [{"component": DEVICE_GUID, "version": "1.2.4",
                       "image": f"{base}/webcam-1.2.4.cab", "sha256": "0" * 64}]}
    )  # fmt: skip
    with pytest.raises(fwupd.FwupdError, match="nothing was changed"):
        await fwupd.firmware_secure(fw, bad, dry_run=False, report=no_report)

    done = await fwupd.firmware_secure(fw, spec, dry_run=False, report=no_report)
    # The test device lives only as long as one fwupdtool run: the next run sees 1.2.2
    # again, and fwupd's history holds the successful 1.2.4 install — "pending".
    assert done["changed"] + done["pending"] == [
        {"firmware": DEVICE_GUID, "from": "1.2.2", "to": "1.2.4"}
    ], done

    with pytest.raises(fwupd.FwupdError, match="no device 'NIC'"):
        await fwupd.firmware_secure(
            fw, fwupd.parse_spec({"firmware": [{"component": "NIC", "version": "1"}]}),
            dry_run=True, report=no_report,
        )  # fmt: skip
