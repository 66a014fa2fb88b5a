"""Unicast probe targets: addresses and CIDRs, bounded so a typo cannot flood a network."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

#: The widest prefix a probe accepts (a /16 is 65,534 hosts).
MAX_PREFIX = 16
MAX_TARGETS = 65536


def parse_targets(specs: Iterable[str], *, limit: int = MAX_TARGETS) -> list[str]:
    """Expand ``ADDR`` / ``ADDR/N`` specs into unique IPv4 host addresses, in order.

    Raises ``ValueError`` naming the offending spec: not an address, IPv6, wider than
    /16, a multicast/broadcast/unspecified address, or more than ``limit`` in total.
    """
    seen: dict[str, None] = {}
    for spec in specs:
        text = spec.strip()
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"probe {spec!r} is not an IPv4 address or CIDR") from None
        if not isinstance(network, ipaddress.IPv4Network):
            raise ValueError(f"probe {spec!r}: IPv6 probes are not supported")
        if network.prefixlen < MAX_PREFIX:
            raise ValueError(
                f"probe {spec!r}: /{network.prefixlen} is wider than /{MAX_PREFIX}; "
                "split it into /16 or smaller ranges"
            )
        hosts = network.hosts() if network.prefixlen < 31 else iter(network)
        for host in hosts:
            if (
                host.is_multicast
                or host.is_unspecified
                or host == ipaddress.IPv4Address("255.255.255.255")
            ):
                raise ValueError(
                    f"probe {spec!r}: {host} is not a host address "
                    "(multicast and broadcast need --interface)"
                )
            seen[str(host)] = None
            if len(seen) > limit:
                raise ValueError(f"probes name more than {limit} addresses")
    return list(seen)
