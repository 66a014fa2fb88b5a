"""decom.firmware_secure through Redfish: plan, checksum, SimpleUpdate, BIOS, read-back."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.oob_support.emulators import Redfish

from hwfleet.oob.driver import BmcAddress, BmcError
from hwfleet.oob.service import OobService

NODE = "node-fw"


@pytest.fixture
def images(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A firmware image served over HTTP on loopback: (url, sha256)."""
    root = tmp_path / "images"
    root.mkdir()
    image = b"HWFLEET-FW component=BIOS version=1.2.0\n" + bytes(range(256)) * 64
    (root / "bios-1.2.0.bin").write_bytes(image)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/bios-1.2.0.bin"
        yield url, hashlib.sha256(image).hexdigest()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def spec(url: str, sha: str) -> dict[str, object]:
    return {
        "bios": {"ProcTurboMode": "Disabled", "BootMode": "Uefi"},
        "firmware": [
            {"component": "BIOS", "version": "1.2.0", "image": url, "sha256": sha},
            {"component": "BMC", "version": "2.0.0"},
        ],
    }


async def set_bmc(oob: OobService, redfish: Redfish) -> None:
    await oob.set_bmc(
        NODE,
        BmcAddress(
            driver="redfish", address=redfish.url, username="admin", password=redfish.password
        ),
    )


async def firmware_versions(oob: OobService) -> dict[str, str]:
    items = await oob.run(NODE, lambda d: d.firmware())
    return {f.component: f.version for f in items}


async def test_dry_run_then_apply_then_all_matched(
    oob: OobService, redfish: Redfish, images: tuple[str, str]
) -> None:
    await set_bmc(oob, redfish)
    url, sha = images
    planned = await oob.firmware_secure(NODE, spec(url, sha), dry_run=True)
    assert planned["dry_run"] and planned["changed"] == []
    assert planned["plan"]["firmware"] == [
        {"component": "BIOS", "from": "1.0.0", "to": "1.2.0", "image": url}
    ]
    assert planned["plan"]["bios"] == [
        {"attribute": "ProcTurboMode", "from": "Enabled", "to": "Disabled"}
    ]
    assert (await firmware_versions(oob))["BIOS"] == "1.0.0"  # the dry run changed nothing

    report = await oob.firmware_secure(NODE, spec(url, sha), dry_run=False)
    assert report["changed"] == [
        {"firmware": "BIOS", "from": "1.0.0", "to": "1.2.0"},
        {"bios": "ProcTurboMode", "from": "Enabled", "to": "Disabled"},
    ]
    assert {"firmware": "BMC", "version": "2.0.0"} in report["matched"]
    assert (await firmware_versions(oob))["BIOS"] == "1.2.0"
    bios = await oob.run(NODE, lambda d: d.bios())
    assert bios["ProcTurboMode"] == "Disabled"

    again = await oob.firmware_secure(NODE, spec(url, sha), dry_run=False)
    assert again["changed"] == [] and len(again["matched"]) == 4


async def test_bad_checksum_changes_nothing(
    oob: OobService, redfish: Redfish, images: tuple[str, str]
) -> None:
    await set_bmc(oob, redfish)
    url, _ = images
    with pytest.raises(BmcError, match=r"SHA-256.*nothing was changed"):
        await oob.firmware_secure(NODE, spec(url, "0" * 64), dry_run=False)
    assert (await firmware_versions(oob))["BIOS"] == "1.0.0"
    bios = await oob.run(NODE, lambda d: d.bios())
    assert bios["ProcTurboMode"] == "Enabled"


async def test_bad_specs_are_refused(oob: OobService, redfish: Redfish) -> None:
    await set_bmc(oob, redfish)
    with pytest.raises(BmcError, match="no firmware component 'NIC'"):
        await oob.firmware_secure(
            NODE, {"firmware": [{"component": "NIC", "version": "9"}]}, dry_run=True
        )
    with pytest.raises(BmcError, match="sha256"):
        await oob.firmware_secure(
            NODE,
            {"firmware": [{"component": "BIOS", "version": "9", "image": "http://x/y"}]},
            dry_run=False,
        )
    with pytest.raises(BmcError, match="names no BIOS setting"):
        await oob.firmware_secure(NODE, {}, dry_run=True)
    with pytest.raises(BmcError, match="no attribute 'Nope'"):
        await oob.firmware_secure(NODE, {"bios": {"Nope": 1}}, dry_run=True)
