"""Shared vocabulary: small type aliases every package uses."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any, TypeAlias

#: A device's serial number keeps the JSON type the device reported (seed 000: ``"sn": 1001``).
Serial: TypeAlias = int | str
#: Device identities are UUID strings in canonical lower-case form.
DeviceId: TypeAlias = str
#: A JSON object as it travels in params, results and bus bodies.
JsonObject: TypeAlias = dict[str, Any]
#: ``(host, port)`` pair.
HostPort: TypeAlias = tuple[str, int]


def default_data_dir() -> str:
    """``~/.hwfleet``: where the server, the agent and the CLI keep their state by default.

    Here rather than in :mod:`hwfleet.settings` so that a CLI command that only talks to
    the API (``hwfleet devices``) need not import msgspec and the settings structs.
    """
    return os.path.join(os.path.expanduser("~"), ".hwfleet")


#: Seconds an agent has to connect (TCP + TLS) and the controller gives a new link to
#: authenticate. The two must move together: an agent that gave up sooner than the
#: controller's wait would retry links the controller was about to serve (issue 18's
#: reconnect storm). Settings (connect_timeout, handshake_timeout), StreamLink and the
#: gateway take their defaults from here.
LINK_TIMEOUT = 15.0

#: Where agents answer discovery (seed 004): settings, responder and browser share these.
DISCOVERY_PORT = 1901
DISCOVERY_GROUP = "239.255.255.250"


def parse_host_port(
    text: str, *, default_host: str = "127.0.0.1", allow_any_port: bool = False
) -> HostPort:
    """Parse ``H:P`` (or ``[v6]:P`` or ``:P``) into a pair, with an error that says what is wrong.

    ``allow_any_port`` accepts port 0 (listen addresses: the system picks a free port).
    """
    value = text.strip()
    if "://" in value or "/" in value:
        # An URL where an address belongs ("https://host:port") would otherwise parse with
        # "https://host" as the host name and fail later as an unknown name.
        raise ValueError(f"{text!r} is not HOST:PORT (give the address without a scheme or path)")
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"{text!r} is not HOST:PORT (expected [v6addr]:port)")
        port_text = rest[1:]
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep:
            raise ValueError(f"{text!r} is not HOST:PORT (no ':' before the port)")
    lowest = 0 if allow_any_port else 1
    if not port_text.isdigit() or not lowest <= int(port_text) < 65536:
        raise ValueError(f"{text!r}: port {port_text!r} is not a number from {lowest} to 65535")
    return (host or default_host, int(port_text))


def utcnow() -> datetime:
    """Now, timezone-aware in UTC: every timestamp hwfleet stores or sends."""
    return datetime.now(UTC)
