"""Network settings validation: input normalised, garbage named by field, secrets never shown."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from hwfleet.agent.netconfig import (
    MASKED,
    NetConfigError,
    NetworkParams,
    from_record,
    record,
    redacted,
    validate,
)
from hwfleet.agent.netconfig.model import parse_mask, parse_name_servers

PSK = "correct-horse-battery"
STATIC = {"method": "static", "ipaddr": "192.168.7.20", "mask": 24, "route": "192.168.7.1"}


def settings(**fields: Any) -> Any:
    return validate(msgspec.convert(fields, NetworkParams))


def error(**fields: Any) -> NetConfigError:
    with pytest.raises(NetConfigError) as failed:
        settings(**fields)
    return failed.value


@pytest.mark.parametrize(
    ("mask", "prefix"),
    [(24, 24), ("24", 24), ("/16", 16), ("255.255.255.0", 24), ("255.255.252.0", 22), (32, 32)],
)
def test_mask_as_prefix_or_dotted(mask: int | str, prefix: int) -> None:
    assert parse_mask(mask) == prefix


@pytest.mark.parametrize("mask", [0, 33, "255.0.255.0", "banana", "-1", "24.5", True])
def test_bad_masks_name_the_field(mask: Any) -> None:
    with pytest.raises(NetConfigError) as failed:
        parse_mask(mask)
    assert failed.value.field == "mask" and str(failed.value).startswith("mask: ")


def test_name_servers_as_list_or_seed_string() -> None:
    assert parse_name_servers("8.8.8.8, 1.1.1.1 2606:4700::1111") == (
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700::1111",
    )
    assert parse_name_servers(["9.9.9.9", "9.9.9.9"]) == ("9.9.9.9",)


def test_static_is_normalised() -> None:
    got = settings(**{**STATIC, "mask": "255.255.255.0", "ns": ["192.168.7.1", "1.1.1.1"]})
    assert (got.method, got.ipaddr, got.prefix) == ("static", "192.168.7.20", 24)
    assert got.route == "192.168.7.1"
    assert got.ns == ("192.168.7.1", "1.1.1.1") and got.netmask == "255.255.255.0"


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"method": "manual"}, "method", "not one of dhcp, static"),
        ({**STATIC, "ipaddr": "192.168.7.256"}, "ipaddr", "not an IP address"),
        ({**STATIC, "ipaddr": "fe80::1"}, "ipaddr", "IPv6"),
        ({**STATIC, "ipaddr": "127.0.0.5"}, "ipaddr", "cannot be a host address"),
        ({**STATIC, "ipaddr": "192.168.7.0"}, "ipaddr", "network or broadcast"),
        ({**STATIC, "ipaddr": "192.168.7.255"}, "ipaddr", "network or broadcast"),
        ({**STATIC, "route": "10.0.0.1"}, "route", "not in 192.168.7.0/24"),
        ({**STATIC, "route": "192.168.7.20"}, "route", "own address"),
        ({**STATIC, "route": "gateway"}, "route", "not an IP address"),
        ({**STATIC, "mask": "255.0.255.0"}, "mask", "contiguous"),
        ({**STATIC, "ns": ["1.1.1.1", "dns.example"]}, "ns", "not an IP address"),
        ({**STATIC, "ns": "224.0.0.1"}, "ns", "cannot be a name server"),
        ({**STATIC, "ns": [f"10.0.0.{i}" for i in range(1, 10)]}, "ns", "at most 8"),
        ({"method": "static", "mask": 24, "route": "10.0.0.1"}, "ipaddr", "required"),
        ({"method": "static", "ipaddr": "10.0.0.2", "route": "10.0.0.1"}, "mask", "required"),
        ({"method": "static", "ipaddr": "10.0.0.2", "mask": 8}, "route", "required"),
        ({"method": "dhcp", "ipaddr": "10.0.0.2"}, "ipaddr", "only for method 'static'"),
        ({"ipaddr": "10.0.0.2"}, "method", "give 'static'"),
        ({"interface": "-rf"}, "interface", "not a network interface name"),
        ({"interface": "a" * 16}, "interface", "not a network interface name"),
        ({"method": "dhcp", "psk": PSK}, "psk", "needs an ssid"),
        ({"method": "dhcp", "ssid": "x" * 33, "psk": PSK}, "ssid", "1 to 32 bytes"),
        ({"method": "dhcp", "ssid": "a\nb", "security": "None"}, "ssid", "control characters"),
        ({"method": "dhcp", "ssid": "lab", "wifi_mode": "mesh"}, "wifi_mode", "client, host"),
        ({"method": "dhcp", "ssid": "lab", "security": "WPA3"}, "security", "not one of"),
        ({"method": "dhcp", "ssid": "lab", "security": "WPA2-PSK"}, "psk", "required"),
        ({"method": "dhcp", "ssid": "lab", "security": "None", "psk": PSK}, "psk", "only for"),
        ({"method": "dhcp", "ssid": "lab", "security": "WEP"}, "wepkey", "required"),
        ({"method": "dhcp", "ssid": "lab", "wepkey": "abc"}, "wepkey", "5 or 13"),
    ],
)
def test_garbage_is_rejected_naming_the_field(
    fields: dict[str, Any], field: str, reason: str
) -> None:
    failed = error(**fields)
    assert failed.field == field
    assert str(failed).startswith(f"{field}: ") and reason in str(failed)


@pytest.mark.parametrize("psk", ["short", "x" * 64, "é" * 10, "tab\there-is-bad"])
def test_a_bad_psk_is_rejected_without_echoing_it(psk: str) -> None:
    failed = error(method="dhcp", ssid="lab", security="WPA2-PSK", psk=psk)
    assert failed.field == "psk" and psk not in str(failed)


def test_psk_forms_that_are_allowed() -> None:
    assert settings(method="dhcp", ssid="lab", psk="8chars!!").security == "WPA2-PSK"
    assert settings(method="dhcp", ssid="lab", psk="ab" * 32).psk == "ab" * 32
    assert settings(method="dhcp", ssid="lab", security="wpa-psk", psk=PSK).security == "WPA-PSK"
    assert settings(method="dhcp", ssid="lab").security == "None"
    assert settings(method="dhcp", ssid="lab", wepkey="abcde").security == "WEP"
    assert settings(method="dhcp", ssid="lab", wifi_mode="ap").wifi_mode == "host"


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(msgspec.ValidationError, match="ipadr"):
        msgspec.convert({"method": "dhcp", "ipadr": "1.2.3.4"}, NetworkParams)


def test_redacted_and_record_mask_secrets() -> None:
    got = settings(**STATIC, interface="eth1", ns="1.1.1.1", ssid="lab", psk=PSK)
    shown = redacted(got)
    assert shown["psk"] == MASKED and PSK not in repr(shown) and PSK not in repr(got)
    assert shown["mask"] == 24 and shown["netmask"] == "255.255.255.0"
    assert shown["ns"] == ["1.1.1.1"]
    assert "wepkey" not in shown and "prefix" not in shown
    assert PSK not in msgspec.json.encode(record(got)).decode()


def test_without_method_the_recorded_addressing_stays() -> None:
    kept = from_record(record(settings(**STATIC, ns="1.1.1.1")))
    wifi_only = validate(NetworkParams(ssid="lab", psk=PSK), kept)
    assert (wifi_only.method, wifi_only.ipaddr, wifi_only.prefix) == ("static", "192.168.7.20", 24)
    assert wifi_only.ns == ("1.1.1.1",) and wifi_only.ssid == "lab"
    assert validate(NetworkParams(ssid="lab", psk=PSK)).method == "dhcp"
