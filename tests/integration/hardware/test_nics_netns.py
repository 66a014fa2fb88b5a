"""Only physical NICs reach the inventory and the scan: real virtual links in a real namespace.

A fresh network namespace gets one interface of each virtual kind the kernel
offers (veth, bridges named ``br0`` and ``docker0``, ifb, tun, tap, macvlan,
and dummy, bond and VLAN where built in); the collector runs inside it via
``ip netns exec`` (which mounts that namespace's sysfs) and must leave every
one out, naming the kind ``ip -d link`` reports. None of these has a
``device`` link, and a namespace cannot be given a device-backed NIC without
moving one of the machine's own (this kernel has no netdevsim), so the *kept*
case is proven on the machine's own interfaces read-only (below) and on a
fake sysfs tree (tests/unit/hardware/test_sysfs_readers.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import service_missing
from tests.kernel import kernel_option
from tests.netns import namespace, run_json

from hwfleet.agent.hardware import SysfsHardwareManager

pytestmark = pytest.mark.netns

RUNNER = str(Path(__file__).with_name("nics_runner.py"))

#: (kernel option, ip-link arguments after the name, the reason the agent must give).
OPTIONAL_KINDS = {
    "dm0": ("CONFIG_DUMMY", ["type", "dummy"], "dummy"),
    "bond0": ("CONFIG_BONDING", ["type", "bond"], "bond"),
    "v0.42": ("CONFIG_VLAN_8021Q", ["link", "v0", "type", "vlan", "id", "42"], "vlan"),
}


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, timeout=10, text=True)


@pytest.fixture
def netns() -> Iterator[str]:
    with namespace("hwnic") as name:
        yield name


def collect(ns: str | None) -> dict[str, Any]:
    return run_json(ns, RUNNER)


def ip_links(ns: str | None) -> dict[str, dict[str, Any]]:
    """``ip -j -d link`` by name: the independent view of kinds and permanent addresses."""
    args = (["-n", ns] if ns else []) + ["-j", "-d", "link", "show"]
    return {link["ifname"]: link for link in json.loads(ip(*args).stdout)}


def test_virtual_links_are_left_out_with_their_kind(netns: str) -> None:
    run = ["-n", netns, "link", "add"]
    ip(*run, "v0", "type", "veth", "peer", "name", "v1")
    ip(*run, "br0", "type", "bridge")
    ip(*run, "docker0", "type", "bridge")
    ip("-n", netns, "link", "set", "v1", "master", "docker0")
    ip(*run, "ifb7", "type", "ifb")
    ip(*run, "mv0", "link", "v0", "type", "macvlan")
    ip("-n", netns, "tuntap", "add", "dev", "tap0", "mode", "tap")
    ip("-n", netns, "tuntap", "add", "dev", "tun0", "mode", "tun")
    expected = {
        "lo": "loopback",
        "v0": "veth",
        "v1": "veth",
        "br0": "bridge",
        "docker0": "bridge",
        "ifb7": "ifb",
        "mv0": "macvlan",
        "tap0": "tap",
        "tun0": "tun",
    }
    missing = []
    for name, (option, args, reason) in OPTIONAL_KINDS.items():
        if ip(*run, name, *args, check=False).returncode == 0:
            expected[name] = reason
        elif kernel_option(option) is not False:
            pytest.fail(f"the kernel has {option} but `ip link add {name}` failed")
        else:
            missing.append(option)
    ip("-n", netns, "link", "set", "v0", "up")  # a link that is up is still not a NIC

    found = collect(netns)

    assert found["interfaces"] == []
    assert found["scan"]["macinfo"] == [] and found["handshake_macs"] == []
    reasons = {entry["name"]: entry["reason"] for entry in found["excluded_interfaces"]}
    assert reasons == expected, f"(kernel without {missing})"
    kinds = {
        name: link.get("linkinfo", {}).get("info_kind") for name, link in ip_links(netns).items()
    }
    for name, reason in expected.items():
        if reason not in ("loopback", "tap", "tun"):
            assert kinds[name] == reason, name


def test_the_machines_own_interfaces_kept_exactly_when_device_backed() -> None:
    """Read-only, in this namespace: a NIC with a ``device`` link is kept with its permanent MAC."""
    if not Path("/sys/class/net").is_dir():
        service_missing("no /sys/class/net here")
    report = SysfsHardwareManager().nic_report()
    links = ip_links(None) if shutil.which("ip") else {}
    backed = {
        name
        for name in os.listdir("/sys/class/net")
        if os.path.exists(f"/sys/class/net/{name}/device")
    }
    kept = {nic.name: nic for nic in report.interfaces}
    no_mac = {entry.name for entry in report.excluded if entry.reason == "no-mac"}
    assert set(kept) == backed - no_mac
    assert set(kept) | {entry.name for entry in report.excluded} == set(
        os.listdir("/sys/class/net")
    )
    for name, nic in kept.items():
        link = links.get(name, {})
        # iproute2 prints permaddr only when it differs from the current address.
        assert nic.mac == link.get("permaddr", link.get("address", nic.mac)).lower()
    for entry in report.excluded:
        assert entry.name not in backed or entry.reason == "no-mac", entry
