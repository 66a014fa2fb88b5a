"""End to end: a qemu VM (TCG) PXE-boots from hwfleet and becomes an enrolled device.

Real parts only: ``hwfleet server`` with Kea in a namespace, the VM's iPXE ROM (Debian's
ipxe-qemu) on a tap device on the namespaced bridge, the discovery kernel and initramfs over
HTTP, the agent enrolling with the token and pinning the CA fingerprint from its kernel
command line (tests/integration/boot/pxe_vm.py). Prints power-on to enrolment.
``HWFLEET_TEST_QEMU_ACCEL=kvm`` runs the same boot with KVM (TCG is the default: CI
machines have no /dev/kvm).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tests.integration.boot.pxe_vm import VM_MAC, pxe_boot

pytestmark = [pytest.mark.slow, pytest.mark.netns]


@pytest.mark.parametrize("proxy", [False, True], ids=["kea", "proxydhcp"])
async def test_qemu_vm_pxe_boots_into_hwfleet(tmp_path: Path, proxy: bool) -> None:
    """``kea``: hwfleet's Kea gives the addresses; ``proxydhcp``: busybox udhcpd does and
    hwfleet (``--dhcp-proxy``) only tells iPXE where to boot."""
    accel = os.environ.get("HWFLEET_TEST_QEMU_ACCEL", "tcg")
    run = await pxe_boot(tmp_path, accel=accel, proxy=proxy)
    print(
        f"\nqemu ({accel}, {'proxyDHCP' if proxy else 'Kea'}) power-on to enrolment: "
        f"{run.seconds:.1f} s"
    )
    assert run.device["enrolled"] is True
    assert VM_MAC in json.dumps(run.detail).lower(), "the inventory reports the VM's NIC"
    keys = [str(e.get("routing_key")) for e in run.events]
    assert any(k.startswith("dhcp.bind.success.") for k in keys), keys
    assert any(k.startswith("http.response.") for k in keys), keys
    # The kernel command line the discovery script gave carried the CA the agent pinned.
    assert f"hwfleet.ca={run.fingerprint}" in run.console
