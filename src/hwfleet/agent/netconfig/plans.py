"""What applying network settings means, as data: the files to write and the argv lists to run.

Two backends. **NetworkManager**: one keyfile profile per interface,
``hwfleet-<interface>`` with a uuid derived from the name (so setting twice
replaces the profile instead of piling them up), loaded and activated with
``nmcli``. The Wi-Fi secret goes into that 0600 file, never onto a command line
where ``ps`` would show it. **iproute2** (no NetworkManager): ``ip addr`` /
``ip route`` for static addressing, the first DHCP client found for DHCP, and
no Wi-Fi (that needs a supplicant, which NetworkManager brings).

Building a plan touches nothing, so the builders are tested directly; only
:mod:`hwfleet.agent.netconfig.apply` runs a plan.
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass, field

from hwfleet.agent.netconfig.model import NetConfigError, NetworkSettings

NM_CONNECTIONS_DIR = "/etc/NetworkManager/system-connections"
_NM_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://hwfleet.invalid/networkmanager")
#: DHCP clients in order of preference, with how to start each in the background.
DHCP_CLIENTS = {
    "dhcpcd": ["dhcpcd", "-4", "-b"],
    "dhclient": ["dhclient", "-4", "-nw"],
    "udhcpc": ["udhcpc", "-b", "-i"],
}


@dataclass(frozen=True, slots=True)
class PlannedFile:
    path: str
    content: str = field(repr=False)  # may hold the Wi-Fi secret: never shown
    mode: int = 0o600


@dataclass(frozen=True, slots=True)
class Plan:
    backend: str
    interface: str
    files: list[PlannedFile] = field(default_factory=list)
    commands: list[list[str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def connection_id(interface: str) -> str:
    return f"hwfleet-{interface}"


def connection_uuid(interface: str) -> str:
    return str(uuid.uuid5(_NM_NAMESPACE, interface))


def _keyfile_value(value: str) -> str:
    """GKeyFile string escaping: backslash, and a leading space that would be trimmed."""
    escaped = value.replace("\\", "\\\\")
    return "\\s" + escaped[1:] if escaped.startswith(" ") else escaped


def nm_keyfile(settings: NetworkSettings, interface: str) -> str:
    lines = [
        "[connection]",
        f"id={connection_id(interface)}",
        f"uuid={connection_uuid(interface)}",
        f"type={'wifi' if settings.wifi else 'ethernet'}",
        f"interface-name={interface}",
        "autoconnect=true",
        "autoconnect-priority=100",
        "",
    ]
    if settings.wifi:
        assert settings.ssid is not None
        mode = "ap" if settings.wifi_mode == "host" else "infrastructure"
        lines += ["[wifi]", f"mode={mode}", f"ssid={_keyfile_value(settings.ssid)}", ""]
        if settings.security in ("WPA-PSK", "WPA2-PSK"):
            assert settings.psk is not None
            proto = "rsn" if settings.security == "WPA2-PSK" else "wpa;rsn"
            lines += [
                "[wifi-security]",
                "key-mgmt=wpa-psk",
                f"proto={proto};",
                f"psk={_keyfile_value(settings.psk)}",
                "",
            ]
        elif settings.security == "WEP":
            assert settings.wepkey is not None
            lines += [
                "[wifi-security]",
                "key-mgmt=none",
                "auth-alg=open",
                "wep-key-type=1",
                f"wep-key0={_keyfile_value(settings.wepkey)}",
                "",
            ]
    else:
        lines += ["[ethernet]", ""]
    v4 = [s for s in settings.ns if ipaddress.ip_address(s).version == 4]
    v6 = [s for s in settings.ns if ipaddress.ip_address(s).version == 6]
    if settings.method == "static":
        lines += [
            "[ipv4]",
            "method=manual",
            f"address1={settings.ipaddr}/{settings.prefix},{settings.route}",
        ]
        if v4:
            lines.append("dns=" + "".join(f"{s};" for s in v4))
    else:
        # DHCP on an access point means the device hands out addresses: NM's "shared".
        lines += ["[ipv4]", "method=shared" if settings.wifi_mode == "host" else "method=auto"]
    lines += ["", "[ipv6]", "method=auto"]
    if v6:
        lines.append("dns=" + "".join(f"{s};" for s in v6))
    return "\n".join(lines) + "\n"


def nmcli_plan(
    settings: NetworkSettings, interface: str, directory: str = NM_CONNECTIONS_DIR
) -> Plan:
    path = f"{directory.rstrip('/')}/{connection_id(interface)}.nmconnection"
    return Plan(
        backend="nmcli",
        interface=interface,
        files=[PlannedFile(path, nm_keyfile(settings, interface))],
        commands=[
            ["nmcli", "connection", "load", path],
            ["nmcli", "-w", "30", "connection", "up", "uuid", connection_uuid(interface)],
        ],
    )


def iproute2_plan(
    settings: NetworkSettings, interface: str, dhcp_client: str | None = None
) -> Plan:
    """Static addressing with ``ip``; DHCP through ``dhcp_client`` (a key of DHCP_CLIENTS)."""
    if settings.wifi:
        raise NetConfigError(
            "ssid", "Wi-Fi settings need NetworkManager (nmcli), which this device does not have"
        )
    commands = [
        ["ip", "-4", "addr", "flush", "dev", interface, "scope", "global"],
        ["ip", "link", "set", "dev", interface, "up"],
    ]
    warnings = []
    if settings.method == "static":
        commands += [
            ["ip", "addr", "add", f"{settings.ipaddr}/{settings.prefix}", "dev", interface],
            ["ip", "route", "replace", "default", "via", str(settings.route), "dev", interface],
        ]
        if settings.ns:
            warnings.append(
                "ns recorded but not applied: iproute2 has no resolver configuration "
                "(NetworkManager applies it)"
            )
    else:
        if dhcp_client is None:
            raise NetConfigError(
                "method",
                "dhcp without NetworkManager needs a DHCP client (dhcpcd, dhclient or udhcpc)",
            )
        commands.append([*DHCP_CLIENTS[dhcp_client], interface])
    return Plan("iproute2", interface, commands=commands, warnings=warnings)
