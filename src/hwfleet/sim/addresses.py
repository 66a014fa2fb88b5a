"""Loopback addresses for simulated devices, and finding a block no other simulator holds.

Device ``i`` uses ``base + i`` (DESIGN §8: 127.1.0.1 + i by default) and binds
its discovery responder there. A second ``hwfleet sim`` on the same machine
would find those ports taken; unless the operator chose the base
(``--address-base``), it moves to the next block — 127.2.0.1, 127.3.0.1, … —
and says so. An ``hwfleet agent`` answers discovery on every address
(0.0.0.0), so no block is free beside one: the error names the port and the
options that avoid it.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

from hwfleet.errors import ConfigError

DEFAULT_ADDRESS_BASE = "127.1.0.1"
#: Blocks start this far apart (a /16 each: room for the 65000 devices ``sim`` allows).
BLOCK_STRIDE = 1 << 16
#: How many blocks to try before giving up.
MAX_BLOCKS = 16


class AddressesTakenError(ConfigError, ValueError):
    """No block of loopback addresses has the discovery port free; the message says how to fix."""


def address_for(index: int, base: str = DEFAULT_ADDRESS_BASE) -> str:
    address = ipaddress.IPv4Address(base) + index
    if not address.is_loopback:
        raise ValueError(
            f"simulated device {index} would use {address}, outside 127.0.0.0/8; "
            "pick a lower --address-base or fewer devices"
        )
    return str(address)


def taken_message(address: str, port: int, index: int) -> str:
    return (
        f"UDP {address}:{port} (discovery for simulated device {index}) is already in use — "
        "another hwfleet sim or agent on this machine? give another --address-base, "
        "another --discovery-port, or --no-discovery"
    )


def _first_taken(count: int, port: int, base: str) -> tuple[int, str] | None:
    """The first device address of the block whose ``port`` cannot be bound, or None."""
    for index in range(count):
        address = address_for(index, base)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((address, port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                return index, address
    return None


def pick_address_base(count: int, port: int, base: str, *, move: bool) -> str:
    """``base`` if devices 0..count-1 can all bind ``port`` there; with ``move``, else the
    first later block that can. Raises :class:`AddressesTakenError` naming the taken address.

    A probe, not a reservation: a simulator starting at the same moment can still win the
    race, and the responders' own binds then report the address (see ``SimFleet.start``).
    """
    address_for(count - 1, base)  # the operator's block must fit in 127.0.0.0/8
    first = ipaddress.IPv4Address(base)
    taken = _first_taken(count, port, base)
    if taken is None:
        return base
    for block in range(1, MAX_BLOCKS if move else 1):
        try:
            candidate = str(first + block * BLOCK_STRIDE)
            address_for(count - 1, candidate)
        except ValueError:
            break  # past 127.255.255.255: no further block
        if _first_taken(count, port, candidate) is None:
            return candidate
    index, address = taken
    raise AddressesTakenError(taken_message(address, port, index))
