"""The real iproute2 path of ``device.network.set``, only inside a network namespace made here.

Each test gets a fresh namespace holding a veth pair (``d0``/``d1``); the apply
function runs in it through ``ip netns exec`` in a subprocess, and the result is
read back with ``ip -n NS -j``. The machine's own interfaces are never touched.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.netns import namespace, run_json

pytestmark = pytest.mark.netns

RUNNER = str(Path(__file__).with_name("netconfig_runner.py"))


def ip(*args: str) -> Any:
    done = subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10, text=True)
    return json.loads(done.stdout) if "-j" in args else done.stdout


@pytest.fixture
def netns() -> Iterator[str]:
    with namespace("hwn") as name:
        ip("-n", name, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
        ip("-n", name, "link", "set", "d1", "up")
        yield name


def run_in(ns: str, op: str, doc: dict[str, Any]) -> dict[str, Any]:
    return run_json(ns, RUNNER, op, json.dumps(doc))


def addresses(ns: str) -> list[str]:
    links = ip("-n", ns, "-j", "-4", "addr", "show", "dev", "d0")
    return [f"{a['local']}/{a['prefixlen']}" for link in links for a in link["addr_info"]]


def gateways(ns: str) -> list[tuple[str, str]]:
    return [(r["gateway"], r["dev"]) for r in ip("-n", ns, "-j", "-4", "route", "show", "default")]


def test_static_apply_sets_address_and_default_route(netns: str) -> None:
    body = {
        "method": "static",
        "interface": "d0",
        "ipaddr": "10.77.0.5",
        "mask": "255.255.255.0",
        "route": "10.77.0.1",
        "ns": "10.77.0.1",
    }
    outcome = run_in(netns, "apply", body)
    assert outcome["backend"] == "iproute2" and outcome["commands"] == 4, outcome
    assert "ns recorded but not applied" in outcome["warnings"][0]
    assert addresses(netns) == ["10.77.0.5/24"]
    assert gateways(netns) == [("10.77.0.1", "d0")]
    live = run_in(netns, "live", {"interface": "d0"})
    assert (live["method"], live["ipaddr"], live["mask"], live["route"]) == (
        "static",
        "10.77.0.5",
        24,
        "10.77.0.1",
    )


def test_a_second_apply_replaces_instead_of_adding(netns: str) -> None:
    first = {"method": "static", "interface": "d0", "ipaddr": "10.77.0.5", "mask": 24}
    run_in(netns, "apply", {**first, "route": "10.77.0.1"})
    second = {"method": "static", "interface": "d0", "ipaddr": "10.88.3.9", "mask": 16}
    outcome = run_in(netns, "apply", {**second, "route": "10.88.0.1"})
    assert "error" not in outcome, outcome
    assert addresses(netns) == ["10.88.3.9/16"]
    assert gateways(netns) == [("10.88.0.1", "d0")]


def test_refusals_change_nothing(netns: str) -> None:
    missing = run_in(
        netns,
        "apply",
        {
            "method": "static",
            "interface": "eth7",
            "ipaddr": "10.1.0.2",
            "mask": 24,
            "route": "10.1.0.1",
        },
    )
    assert missing == {"error": "interface: eth7 does not exist on this device"}
    wifi = run_in(
        netns, "apply", {"method": "dhcp", "interface": "d0", "ssid": "lab", "psk": "x" * 12}
    )
    assert "error" in wifi and "x" * 12 not in wifi["error"]
    assert addresses(netns) == []
