"""TFTP packets (RFC 1350) and options (RFC 2347 negotiation, 2348 blksize, 2349 tsize/timeout)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

RRQ, WRQ, DATA, ACK, ERROR, OACK = 1, 2, 3, 4, 5, 6
ERR_UNDEFINED, ERR_NOT_FOUND, ERR_ACCESS, ERR_ILLEGAL, ERR_OPTION = 0, 1, 2, 4, 8
DEFAULT_BLKSIZE = 512
MIN_BLKSIZE, MAX_BLKSIZE = 8, 65464


class TftpPacketError(ValueError):
    """A datagram that is not a well-formed TFTP packet."""


@dataclass(frozen=True, slots=True)
class Request:
    opcode: int
    filename: str
    mode: str
    options: dict[str, str] = field(default_factory=dict)


def parse_request(data: bytes) -> Request:
    if len(data) < 4:
        raise TftpPacketError("packet too short")
    (opcode,) = struct.unpack("!H", data[:2])
    if opcode not in (RRQ, WRQ):
        raise TftpPacketError(f"opcode {opcode} is not a request")
    if not data.endswith(b"\0"):
        raise TftpPacketError("request does not end in NUL")
    parts = data[2:-1].split(b"\0")
    if len(parts) < 2 or len(parts) % 2:
        raise TftpPacketError("request needs a filename and a mode, and options in pairs")
    try:
        words = [p.decode("ascii") for p in parts]
    except UnicodeDecodeError:
        raise TftpPacketError("request is not ASCII") from None
    options = {words[i].lower(): words[i + 1] for i in range(2, len(words), 2)}
    return Request(opcode, words[0], words[1].lower(), options)


def data_packet(block: int, payload: bytes) -> bytes:
    return struct.pack("!HH", DATA, block & 0xFFFF) + payload


def error_packet(code: int, message: str) -> bytes:
    return struct.pack("!HH", ERROR, code) + message.encode("ascii", "replace")[:200] + b"\0"


def oack_packet(options: dict[str, str]) -> bytes:
    body = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in options.items())
    return struct.pack("!H", OACK) + body


def parse_ack(data: bytes) -> int | None:
    """The block number of an ACK; None for anything else."""
    if len(data) >= 4 and data[:2] == b"\0\x04":
        return int(struct.unpack("!H", data[2:4])[0])
    return None


def parse_error(data: bytes) -> str | None:
    """The message of an ERROR packet; None for anything else."""
    if len(data) >= 4 and data[:2] == b"\0\x05":
        return data[4:].split(b"\0", 1)[0].decode("ascii", "replace")
    return None


def negotiate(options: dict[str, str], size: int) -> tuple[dict[str, str], int, float | None]:
    """The options to acknowledge, the block size and the timeout (RFC 2347: unknown
    options and out-of-range values are left out of the OACK, not refused)."""
    accepted: dict[str, str] = {}
    blksize = DEFAULT_BLKSIZE
    timeout: float | None = None
    if "blksize" in options and options["blksize"].isdigit():
        blksize = max(MIN_BLKSIZE, min(MAX_BLKSIZE, int(options["blksize"])))
        accepted["blksize"] = str(blksize)
    if "tsize" in options:
        accepted["tsize"] = str(size)
    if (
        "timeout" in options
        and options["timeout"].isdigit()
        and 1 <= int(options["timeout"]) <= 255
    ):
        timeout = float(options["timeout"])
        accepted["timeout"] = options["timeout"]
    return accepted, blksize, timeout
