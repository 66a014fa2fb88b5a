"""Kea DHCPv4 configuration, generated from hwfleet's boot settings and its pins.

Kea is Debian's ``kea-dhcp4-server``. Debian builds the ``lease_cmds`` hook (lease
queries and deletes through the control socket) but not ``host_cmds``, so
reservations (pins) live in hwfleet's store and go into the generated
configuration; a pin change pushes the new configuration with ``config-set``.

Clients are sorted into classes so one DHCP server boots them all: a PXE ROM gets
``undionly.kpxe`` (BIOS) or ``ipxe.efi`` (UEFI) by TFTP, and iPXE (user class
``iPXE``) gets the HTTP URL of its boot script.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Where Debian installs Kea's hook libraries.
HOOKS_DIR = Path("/usr/lib/x86_64-linux-gnu/kea/hooks")
LEASE_CMDS = "libdhcp_lease_cmds.so"
#: The one subnet hwfleet configures; lease commands name it.
SUBNET_ID = 1


@dataclass(frozen=True, slots=True)
class Pin:
    """A reservation: this MAC always gets this address."""

    mac: str
    ip: str


@dataclass(frozen=True, slots=True)
class KeaLayout:
    """Where one Kea instance keeps its files (all under hwfleet's data dir)."""

    directory: Path

    @property
    def config(self) -> Path:
        return self.directory / "kea-dhcp4.json"

    @property
    def socket(self) -> Path:
        return self.directory / "kea4-ctrl.sock"

    @property
    def leases(self) -> Path:
        return self.directory / "kea-leases4.csv"


@dataclass(frozen=True, slots=True)
class DhcpRange:
    """``A-B``: the pool; its /24-or-narrower subnet is the smallest network holding both."""

    first: ipaddress.IPv4Address
    last: ipaddress.IPv4Address
    network: ipaddress.IPv4Network

    @classmethod
    def parse(cls, text: str, prefix: int | None = None) -> DhcpRange:
        try:
            a_text, b_text = text.split("-", 1)
            first = ipaddress.IPv4Address(a_text.strip())
            last = ipaddress.IPv4Address(b_text.strip())
        except ValueError:
            raise ValueError(
                f"DHCP range {text!r} must be two IPv4 addresses A-B, e.g. 10.0.0.100-10.0.0.200"
            ) from None
        if int(last) < int(first):
            raise ValueError(f"DHCP range {text!r}: the last address is before the first")
        if prefix is None:
            prefix = 24
            while prefix > 0 and int(first) >> (32 - prefix) != int(last) >> (32 - prefix):
                prefix -= 1
        network = ipaddress.IPv4Network(f"{first}/{prefix}", strict=False)
        if last not in network:
            raise ValueError(f"DHCP range {text!r} does not fit in {network}")
        return cls(first, last, network)

    def __contains__(self, ip: object) -> bool:
        return isinstance(ip, ipaddress.IPv4Address) and self.first <= ip <= self.last

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


@dataclass(frozen=True, slots=True)
class KeaParams:
    """Everything the configuration depends on."""

    interface: str
    server_ip: str
    dhcp_range: DhcpRange
    layout: KeaLayout
    http_base: str  # e.g. http://10.0.0.1:8780 (the iPXE script URL is under it)
    lease_time: int = 3600
    pins: tuple[Pin, ...] = field(default=())
    hooks_dir: Path = HOOKS_DIR


def ipxe_url(http_base: str) -> str:
    """The URL iPXE fetches first; it chains to the per-MAC script (api/boot.py)."""
    return http_base.rstrip("/") + "/boot/ipxe"


def build_config(p: KeaParams) -> dict[str, Any]:
    """The complete ``{"Dhcp4": …}`` document."""
    hook = p.hooks_dir / LEASE_CMDS
    subnet: dict[str, Any] = {
        "id": SUBNET_ID,
        "subnet": str(p.dhcp_range.network),
        "pools": [{"pool": str(p.dhcp_range)}],
        "option-data": [{"name": "routers", "data": p.server_ip}],
        "reservations": [{"hw-address": pin.mac, "ip-address": pin.ip} for pin in p.pins],
    }
    return {
        "Dhcp4": {
            # raw sockets: PXE ROMs broadcast from 0.0.0.0 before they have an address.
            "interfaces-config": {"interfaces": [p.interface], "dhcp-socket-type": "raw"},
            "control-socket": {"socket-type": "unix", "socket-name": str(p.layout.socket)},
            "lease-database": {
                "type": "memfile",
                "persist": True,
                "name": str(p.layout.leases),
                "lfc-interval": 3600,
            },
            "hooks-libraries": [{"library": str(hook)}],
            "valid-lifetime": p.lease_time,
            "renew-timer": p.lease_time // 2,
            "rebind-timer": p.lease_time * 7 // 8,
            # A reservation may name an address outside the pool; check both ways.
            "reservations-out-of-pool": False,
            "next-server": p.server_ip,
            "client-classes": _boot_classes(p),
            "subnet4": [subnet],
            "loggers": [
                {
                    "name": "kea-dhcp4",
                    # stdout is the supervisor's pipe: it waits for DHCP4_STARTED there.
                    "output_options": [{"output": "stdout", "flush": True}],
                    "severity": "INFO",
                }
            ],
        }
    }


def _boot_classes(p: KeaParams) -> list[dict[str, Any]]:
    # Order matters: Kea takes boot-file-name from the first matching class, and iPXE
    # also sends option 93, so the iPXE class comes first.
    is_ipxe = "substring(option[77].hex,0,4) == 'iPXE'"
    return [
        {"name": "ipxe", "test": is_ipxe, "boot-file-name": ipxe_url(p.http_base)},
        {
            "name": "pxe-uefi",
            "test": "option[93].hex == 0x0007 or option[93].hex == 0x0009",
            "next-server": p.server_ip,
            "boot-file-name": "ipxe.efi",
        },
        {
            "name": "pxe-bios",
            "test": "option[93].hex == 0x0000",
            "next-server": p.server_ip,
            "boot-file-name": "undionly.kpxe",
        },
    ]


def check_pin(p: KeaParams, pin: Pin) -> None:
    """Refuse a pin Kea would refuse (outside the subnet, the network or broadcast address)."""
    ip = ipaddress.IPv4Address(pin.ip)
    net = p.dhcp_range.network
    if ip not in net or ip in (net.network_address, net.broadcast_address):
        raise ValueError(f"{pin.ip} is not a host address of the DHCP subnet {net}")
    if str(ip) == p.server_ip:
        raise ValueError(f"{pin.ip} is this server's own address")
