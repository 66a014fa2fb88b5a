"""Device discovery (seed 004): UDP responders on devices, a verifying browser, DNS-SD.

See docs/discovery.md for the packet format and the safety rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hwfleet._lazy import lazy_exports

if TYPE_CHECKING:
    from hwfleet.discovery.browser import DiscoveryBrowser
    from hwfleet.discovery.guards import PacketRateLimiter, ReplayGuard
    from hwfleet.discovery.metadata import DeviceMetadata
    from hwfleet.discovery.packets import (
        MAX_PACKET,
        QUERY_SIZE,
        AdvertBody,
        BadPacketError,
        Packet,
        PacketType,
        QueryBody,
        build_advert,
        build_query,
        parse,
    )
    from hwfleet.discovery.registry import AddressChange, Discovered, KnownKeys, Registry
    from hwfleet.discovery.responder import DiscoveryResponder
    from hwfleet.discovery.signing import fingerprint, public_raw, raw_from_pem, verify
    from hwfleet.discovery.targets import parse_targets
    from hwfleet.discovery.udp import DEFAULT_GROUP, DEFAULT_PORT

# Exports resolve on first use: see hwfleet._lazy.
_EXPORTS = {
    "DiscoveryBrowser": "browser",
    "PacketRateLimiter": "guards",
    "ReplayGuard": "guards",
    "DeviceMetadata": "metadata",
    "MAX_PACKET": "packets",
    "QUERY_SIZE": "packets",
    "AdvertBody": "packets",
    "BadPacketError": "packets",
    "Packet": "packets",
    "PacketType": "packets",
    "QueryBody": "packets",
    "build_advert": "packets",
    "build_query": "packets",
    "parse": "packets",
    "AddressChange": "registry",
    "Discovered": "registry",
    "KnownKeys": "registry",
    "Registry": "registry",
    "DiscoveryResponder": "responder",
    "fingerprint": "signing",
    "public_raw": "signing",
    "raw_from_pem": "signing",
    "verify": "signing",
    "parse_targets": "targets",
    "DEFAULT_GROUP": "udp",
    "DEFAULT_PORT": "udp",
}


__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = [
    "DEFAULT_GROUP",
    "DEFAULT_PORT",
    "MAX_PACKET",
    "QUERY_SIZE",
    "AddressChange",
    "AdvertBody",
    "BadPacketError",
    "DeviceMetadata",
    "Discovered",
    "DiscoveryBrowser",
    "DiscoveryResponder",
    "KnownKeys",
    "Packet",
    "PacketRateLimiter",
    "PacketType",
    "QueryBody",
    "Registry",
    "ReplayGuard",
    "build_advert",
    "build_query",
    "fingerprint",
    "parse",
    "parse_targets",
    "public_raw",
    "raw_from_pem",
    "verify",
]
