"""nmcli and iproute2 plans as data (nothing runs); the Wi-Fi scan parsers on captured output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from hwfleet.agent.netconfig import NetConfigError, NetworkParams, validate
from hwfleet.agent.netconfig.apply import (
    build_plan,
    check_real_interface,
    parse_ip_addr,
    parse_ip_route,
    parse_resolv_conf,
)
from hwfleet.agent.netconfig.plans import connection_uuid, iproute2_plan, nmcli_plan
from hwfleet.agent.netconfig.wifi import dbm_to_percent, parse_iw, parse_nmcli, split_nmcli_terse

PSK = "a-secret\\with backslash"
STATIC = {"method": "static", "ipaddr": "10.20.0.5", "mask": "255.255.0.0", "route": "10.20.0.1"}


def settings(**fields: Any) -> Any:
    return validate(msgspec.convert(fields, NetworkParams))


def keyfile(plan: Any) -> dict[str, dict[str, str]]:
    """The keyfile as {section: {key: value}}."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in plan.files[0].content.splitlines():
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        elif "=" in line:
            key, _, value = line.partition("=")
            current[key] = value
    return sections


def test_nmcli_static_ethernet_profile() -> None:
    plan = nmcli_plan(settings(**STATIC, ns="10.20.0.1 2001:db8::53"), "enp3s0", "/tmp/nm")
    ini = keyfile(plan)
    assert ini["connection"]["type"] == "ethernet"
    assert ini["connection"]["interface-name"] == "enp3s0"
    assert ini["ipv4"] == {
        "method": "manual",
        "address1": "10.20.0.5/16,10.20.0.1",
        "dns": "10.20.0.1;",
    }
    assert ini["ipv6"]["dns"] == "2001:db8::53;"
    assert (
        plan.files[0].path == "/tmp/nm/hwfleet-enp3s0.nmconnection" and plan.files[0].mode == 0o600
    )
    assert plan.commands == [
        ["nmcli", "connection", "load", "/tmp/nm/hwfleet-enp3s0.nmconnection"],
        ["nmcli", "-w", "30", "connection", "up", "uuid", connection_uuid("enp3s0")],
    ]


def test_nmcli_profile_is_stable_per_interface() -> None:
    # Setting twice must replace the profile, not pile up a second one.
    assert connection_uuid("wlan0") == connection_uuid("wlan0") != connection_uuid("wlan1")


def test_nmcli_wifi_secret_is_in_the_file_never_on_a_command_line() -> None:
    plan = nmcli_plan(settings(method="dhcp", ssid=" my lab", psk=PSK), "wlan0", "/tmp/nm")
    ini = keyfile(plan)
    assert ini["connection"]["type"] == "wifi"
    assert ini["wifi"] == {"mode": "infrastructure", "ssid": "\\smy lab"}
    assert ini["wifi-security"]["key-mgmt"] == "wpa-psk"
    assert ini["wifi-security"]["psk"] == "a-secret\\\\with backslash"
    assert ini["ipv4"] == {"method": "auto"}
    assert all(PSK not in arg for argv in plan.commands for arg in argv)
    assert PSK not in repr(plan)


def test_nmcli_host_mode_shares_and_wep() -> None:
    ini = keyfile(nmcli_plan(settings(method="dhcp", ssid="ap", wifi_mode="host"), "wlan0"))
    assert ini["wifi"]["mode"] == "ap" and ini["ipv4"]["method"] == "shared"
    assert "wifi-security" not in ini
    wep = keyfile(nmcli_plan(settings(method="dhcp", ssid="old", wepkey="0123456789"), "wlan0"))
    assert (
        wep["wifi-security"]["key-mgmt"] == "none"
        and wep["wifi-security"]["wep-key0"] == "0123456789"
    )


def test_iproute2_static_commands() -> None:
    plan = iproute2_plan(settings(**STATIC, ns="1.1.1.1"), "eth1")
    assert plan.commands == [
        ["ip", "-4", "addr", "flush", "dev", "eth1", "scope", "global"],
        ["ip", "link", "set", "dev", "eth1", "up"],
        ["ip", "addr", "add", "10.20.0.5/16", "dev", "eth1"],
        ["ip", "route", "replace", "default", "via", "10.20.0.1", "dev", "eth1"],
    ]
    assert plan.files == [] and "ns recorded but not applied" in plan.warnings[0]


def test_iproute2_dhcp_needs_a_client_and_wifi_needs_nmcli() -> None:
    assert iproute2_plan(settings(method="dhcp"), "eth1", "dhclient").commands[-1] == [
        "dhclient",
        "-4",
        "-nw",
        "eth1",
    ]
    with pytest.raises(NetConfigError, match="DHCP client"):
        iproute2_plan(settings(method="dhcp"), "eth1", None)
    with pytest.raises(NetConfigError, match="NetworkManager") as failed:
        iproute2_plan(settings(method="dhcp", ssid="lab", psk=PSK), "wlan0", "dhcpcd")
    assert failed.value.field == "ssid"


async def test_build_plan_picks_iproute2_and_the_first_dhcp_client_without_nmcli() -> None:
    found = {"udhcpc": "/sbin/udhcpc", "dhcpcd": "/sbin/dhcpcd"}
    plan = await build_plan(settings(method="dhcp"), "eth0", which=found.get)
    assert plan.backend == "iproute2" and plan.commands[-1] == ["dhcpcd", "-4", "-b", "eth0"]
    nm = await build_plan(settings(method="dhcp"), "eth0", backend="nmcli", which=found.get)
    assert nm.backend == "nmcli"


def test_real_interfaces_must_exist_and_wifi_must_be_a_radio(tmp_path: Path) -> None:
    (tmp_path / "eth0").mkdir()
    (tmp_path / "wlan0" / "wireless").mkdir(parents=True)
    check_real_interface("eth0", sys_net=tmp_path)
    check_real_interface("wlan0", wifi=True, sys_net=tmp_path)
    with pytest.raises(NetConfigError, match="does not exist"):
        check_real_interface("eth9", sys_net=tmp_path)
    with pytest.raises(NetConfigError, match="not a Wi-Fi interface"):
        check_real_interface("eth0", wifi=True, sys_net=tmp_path)


def test_live_state_parsers() -> None:
    addr = [
        {
            "ifname": "eth0",
            "addr_info": [
                {
                    "family": "inet",
                    "local": "10.1.2.3",
                    "prefixlen": 22,
                    "scope": "global",
                    "dynamic": True,
                }
            ],
        }
    ]
    assert parse_ip_addr(addr) == {"method": "dhcp", "ipaddr": "10.1.2.3", "mask": 22}
    addr[0]["addr_info"][0].pop("dynamic")
    assert parse_ip_addr(addr)["method"] == "static"
    assert parse_ip_route([{"dst": "default", "gateway": "10.1.0.1", "dev": "eth0"}]) == "10.1.0.1"
    assert parse_resolv_conf("# x\nnameserver 1.1.1.1\nsearch lan\nnameserver ::1\n") == [
        "1.1.1.1",
        "::1",
    ]


def test_nmcli_terse_output_with_escaped_colons() -> None:
    assert split_nmcli_terse(r"cafe\:wifi:77:WPA2") == ["cafe:wifi", "77", "WPA2"]
    output = "\n".join(
        [r"cafe\:wifi:77:WPA2", "open net:40:", "cafe\\:wifi:52:WPA2", ":30:WPA1 WPA2", ""]
    )
    assert parse_nmcli(output) == [
        {"ssid": "cafe:wifi", "signal": 77, "security": "WPA2"},
        {"ssid": "open net", "signal": 40, "security": ""},
        {"ssid": "", "signal": 30, "security": "WPA1 WPA2"},
    ]


IW_SCAN = """\
BSS 00:11:22:33:44:55(on wlan0)
\tfreq: 2412
\tsignal: -48.00 dBm
\tSSID: lab
\tcapability: ESS Privacy ShortSlotTime (0x0411)
\tRSN:\t * Version: 1
BSS 66:77:88:99:aa:bb(on wlan0)
\tsignal: -81.00 dBm
\tSSID: old-ap
\tcapability: ESS Privacy (0x0011)
BSS 66:77:88:99:aa:cc(on wlan0) -- associated
\tsignal: -70.00 dBm
\tSSID: cafe
\tcapability: ESS (0x0001)
"""


def test_iw_scan_output() -> None:
    assert parse_iw(IW_SCAN) == [
        {"ssid": "lab", "signal": 100, "dbm": -48.0, "security": "WPA2"},
        {"ssid": "cafe", "signal": 60, "dbm": -70.0, "security": ""},
        {"ssid": "old-ap", "signal": 38, "dbm": -81.0, "security": "WEP"},
    ]
    assert (dbm_to_percent(-100), dbm_to_percent(-75), dbm_to_percent(-20)) == (0, 50, 100)
