"""Network settings (seed 004 ``modify_network``): the wire shape, its validation, its redaction.

The fields are fluxclient's: ``method`` (dhcp | static), ``ipaddr``, ``mask``,
``route`` (the default gateway), ``ns`` (name servers), ``wifi_mode`` (client |
host), ``ssid``, ``security`` (None | WEP | WPA-PSK | WPA2-PSK), ``psk`` and
``wepkey``; hwfleet adds ``interface``. Every field is checked before anything
is applied, and every error names its field. The Wi-Fi secrets never appear in
an error, a reply, a log line or a file this package writes: :func:`redacted`
is the only view that leaves the agent.
"""

from __future__ import annotations

import ipaddress
import re
import string
from dataclasses import asdict, dataclass, field
from typing import Any

import msgspec

from hwfleet.errors import ConfigError

SECRET_FIELDS = ("psk", "wepkey")
MASKED = "***"
MAX_NAME_SERVERS = 8
SECURITY = {
    "none": "None",
    "open": "None",
    "wep": "WEP",
    "wpa-psk": "WPA-PSK",
    "wpa2-psk": "WPA2-PSK",
}
WIFI_MODES = {"client": "client", "infrastructure": "client", "host": "host", "ap": "host"}
_IFNAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,14}$")
_HEX = set(string.hexdigits)


class NetConfigError(ConfigError, ValueError):
    """One field is wrong; ``str()`` is ``<field>: <reason>`` (never a secret's value)."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name


class NetworkParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``device.network.set`` params as they arrive; :func:`validate` turns them into settings."""

    method: str | None = None
    interface: str | None = None
    ipaddr: str | None = None
    mask: int | str | None = None
    route: str | None = None
    ns: list[str] | str | None = None
    wifi_mode: str | None = None
    ssid: str | None = None
    security: str | None = None
    psk: str | None = None
    wepkey: str | None = None


@dataclass(frozen=True, slots=True)
class NetworkSettings:
    """Validated, normalised settings; ``prefix`` is the mask as a prefix length."""

    method: str
    interface: str | None = None
    ipaddr: str | None = None
    prefix: int | None = None
    route: str | None = None
    ns: tuple[str, ...] = ()
    wifi_mode: str | None = None
    ssid: str | None = None
    security: str | None = None
    psk: str | None = field(default=None, repr=False)
    wepkey: str | None = field(default=None, repr=False)

    @property
    def wifi(self) -> bool:
        return self.ssid is not None

    @property
    def netmask(self) -> str | None:
        if self.prefix is None:
            return None
        return str(ipaddress.IPv4Network(f"0.0.0.0/{self.prefix}").netmask)


def check_interface(name: str) -> str:
    # Kernel names are at most 15 bytes; a leading '-' would read as an option to ip/nmcli.
    if not _IFNAME.match(name):
        raise NetConfigError("interface", f"{name[:32]!r} is not a network interface name")
    return name


def parse_mask(mask: int | str) -> int:
    """A prefix length from ``24``, ``"24"``, ``"/24"`` or ``"255.255.255.0"``."""
    text = str(mask).strip().lstrip("/")
    if isinstance(mask, bool):
        raise NetConfigError("mask", "must be a prefix length or a dotted netmask")
    if text.isdigit():
        prefix = int(text)
        if not 1 <= prefix <= 32:
            raise NetConfigError("mask", f"prefix length {prefix} is not between 1 and 32")
        return prefix
    try:
        return ipaddress.IPv4Network(f"0.0.0.0/{text}").prefixlen
    except ValueError:
        raise NetConfigError(
            "mask", f"{text[:40]!r} is neither a prefix length nor a contiguous dotted netmask"
        ) from None


def _ipv4(field_name: str, text: str) -> ipaddress.IPv4Address:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        raise NetConfigError(field_name, f"{text[:40]!r} is not an IP address") from None
    if not isinstance(address, ipaddress.IPv4Address):
        raise NetConfigError(field_name, f"{address} is IPv6; static addressing takes IPv4")
    if address.is_unspecified or address.is_multicast or address.is_loopback:
        raise NetConfigError(field_name, f"{address} cannot be a host address")
    return address


def parse_name_servers(ns: list[str] | str) -> tuple[str, ...]:
    """A list of IPs, or fluxclient's one string (comma or space separated)."""
    items = ns.replace(",", " ").split() if isinstance(ns, str) else [s.strip() for s in ns]
    servers: list[str] = []
    for item in items:
        try:
            address = ipaddress.ip_address(item)
        except ValueError:
            raise NetConfigError("ns", f"{item[:40]!r} is not an IP address") from None
        if address.is_unspecified or address.is_multicast:
            raise NetConfigError("ns", f"{address} cannot be a name server")
        if str(address) not in servers:
            servers.append(str(address))
    if len(servers) > MAX_NAME_SERVERS:
        raise NetConfigError("ns", f"at most {MAX_NAME_SERVERS} name servers")
    return tuple(servers)


def _check_ssid(ssid: str) -> str:
    raw = ssid.encode("utf-8")
    if not 1 <= len(raw) <= 32:
        raise NetConfigError("ssid", "must be 1 to 32 bytes")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in ssid):
        raise NetConfigError("ssid", "control characters are not allowed")
    return ssid


def _check_psk(psk: str) -> None:
    # IEEE 802.11i: a passphrase of 8-63 printable ASCII characters, or 64 hex digits.
    if len(psk) == 64 and set(psk) <= _HEX:
        return
    if not 8 <= len(psk) <= 63 or any(not 0x20 <= ord(ch) <= 0x7E for ch in psk):
        raise NetConfigError("psk", "must be 8-63 printable ASCII characters or 64 hex digits")


def _check_wepkey(key: str) -> None:
    ok_ascii = len(key) in (5, 13) and all(0x20 <= ord(ch) <= 0x7E for ch in key)
    ok_hex = len(key) in (10, 26) and set(key) <= _HEX
    if not (ok_ascii or ok_hex):
        raise NetConfigError("wepkey", "must be 5 or 13 ASCII characters, or 10 or 26 hex digits")


def _addressing(p: NetworkParams, method: str) -> dict[str, Any]:
    if method == "dhcp":
        for name in ("ipaddr", "mask", "route", "ns"):
            if getattr(p, name) not in (None, "", []):
                raise NetConfigError(name, "is only for method 'static'")
        return {}
    for name in ("ipaddr", "mask", "route"):
        if getattr(p, name) in (None, ""):
            raise NetConfigError(name, "is required for method 'static'")
    assert p.ipaddr is not None and p.mask is not None and p.route is not None
    address = _ipv4("ipaddr", p.ipaddr)
    prefix = parse_mask(p.mask)
    network = ipaddress.IPv4Network(f"{address}/{prefix}", strict=False)
    if prefix < 31 and address in (network.network_address, network.broadcast_address):
        raise NetConfigError("ipaddr", f"{address} is the network or broadcast of {network}")
    gateway = _ipv4("route", p.route)
    if prefix < 32 and gateway not in network:
        raise NetConfigError("route", f"gateway {gateway} is not in {network}")
    if gateway == address:
        raise NetConfigError("route", "the gateway cannot be the device's own address")
    ns = parse_name_servers(p.ns) if p.ns not in (None, "") else ()
    return {"ipaddr": str(address), "prefix": prefix, "route": str(gateway), "ns": ns}


def _wifi(p: NetworkParams) -> dict[str, Any]:
    if p.ssid is None:
        for name in ("wifi_mode", "security", "psk", "wepkey"):
            if getattr(p, name) is not None:
                raise NetConfigError(name, "needs an ssid")
        return {}
    mode = WIFI_MODES.get((p.wifi_mode or "client").strip().lower())
    if mode is None:
        raise NetConfigError("wifi_mode", f"{p.wifi_mode!r} is not one of client, host")
    default = "WPA2-PSK" if p.psk is not None else "WEP" if p.wepkey is not None else "None"
    security = SECURITY.get((p.security or default).strip().lower())
    if security is None:
        raise NetConfigError(
            "security", f"{p.security!r} is not one of None, WEP, WPA-PSK, WPA2-PSK"
        )
    if security.endswith("PSK"):
        if p.psk is None:
            raise NetConfigError("psk", f"is required for security {security}")
        _check_psk(p.psk)
    elif p.psk is not None:
        raise NetConfigError("psk", f"is only for WPA-PSK or WPA2-PSK, not {security}")
    if security == "WEP":
        if p.wepkey is None:
            raise NetConfigError("wepkey", "is required for security WEP")
        _check_wepkey(p.wepkey)
    elif p.wepkey is not None:
        raise NetConfigError("wepkey", f"is only for security WEP, not {security}")
    return {
        "wifi_mode": mode,
        "ssid": _check_ssid(p.ssid),
        "security": security,
        "psk": p.psk,
        "wepkey": p.wepkey,
    }


def validate(p: NetworkParams, keep: NetworkSettings | None = None) -> NetworkSettings:
    """Check every field; without ``method`` the addressing of ``keep`` (else DHCP) stays."""
    interface = check_interface(p.interface) if p.interface is not None else None
    if p.method is None:
        if any(getattr(p, n) not in (None, "", []) for n in ("ipaddr", "mask", "route", "ns")):
            raise NetConfigError("method", "give 'static' (or 'dhcp') with addressing fields")
        if keep is not None:
            base = {n: getattr(keep, n) for n in ("method", "ipaddr", "prefix", "route", "ns")}
        else:
            base = {"method": "dhcp"}
    else:
        method = p.method.strip().lower()
        if method not in ("dhcp", "static"):
            raise NetConfigError("method", f"{p.method!r} is not one of dhcp, static")
        base = {"method": method, **_addressing(p, method)}
    return NetworkSettings(interface=interface, **base, **_wifi(p))


def redacted(settings: NetworkSettings) -> dict[str, Any]:
    """The settings as a reply shows them: secrets masked, absent fields left out."""
    doc = {k: v for k, v in asdict(settings).items() if v not in (None, ())}
    doc.pop("prefix", None)
    if settings.prefix is not None:
        doc["mask"] = settings.prefix
        doc["netmask"] = settings.netmask
    if settings.ns:
        doc["ns"] = list(settings.ns)
    for secret in SECRET_FIELDS:
        if doc.get(secret) is not None:
            doc[secret] = MASKED
    return doc


def from_record(doc: dict[str, Any]) -> NetworkSettings:
    """Settings back from a record written by :func:`record` (secrets were never stored)."""
    return NetworkSettings(
        method=str(doc.get("method", "dhcp")),
        interface=doc.get("interface"),
        ipaddr=doc.get("ipaddr"),
        prefix=doc.get("mask"),
        route=doc.get("route"),
        ns=tuple(doc.get("ns", ())),
        wifi_mode=doc.get("wifi_mode"),
        ssid=doc.get("ssid"),
        security=doc.get("security"),
        psk=MASKED if doc.get("psk") else None,
        wepkey=MASKED if doc.get("wepkey") else None,
    )


def record(settings: NetworkSettings) -> dict[str, Any]:
    """What the agent stores: the redacted view (a secret is recorded as set, never kept)."""
    return redacted(settings)
