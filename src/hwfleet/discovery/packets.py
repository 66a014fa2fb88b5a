"""Discovery datagrams: a fixed binary header, a JSON body, an optional Ed25519 signature.

Layout (all integers big-endian; docs/discovery.md has the full description)::

    0   4  magic  b"HWFD"
    4   1  version (1)
    5   1  type: 1 query, 2 reply, 3 announce
    6   1  flags: 0x01 signed, 0x02 truncated (other bits must be zero)
    7   1  reserved, must be zero
    8   2  body length n (1 .. MAX_BODY)
    10  n  body: a UTF-8 JSON object (QueryBody or AdvertBody)
    ..  64 signature over bytes [0, 10 + n)   (reply/announce with the signed flag)
    ..     zero padding                        (query only, up to at least QUERY_SIZE)

A query is padded to at least ``QUERY_SIZE`` bytes and a reply is never built larger
than the query it answers, so a forged source address cannot amplify traffic. The
parser is strict: anything it does not fully understand raises ``BadPacketError`` with a
short ``code`` (for counters) and a reason a human can read.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import secrets
import struct
import time
import uuid as uuidlib
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Annotated

import msgspec

from hwfleet.discovery.signing import SIGNATURE_SIZE, fingerprint, public_raw
from hwfleet.errors import ProtocolError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

MAGIC = b"HWFD"
VERSION = 1
HEADER = struct.Struct("!4sBBBBH")
HEADER_SIZE = HEADER.size
#: Queries are padded to at least this many bytes (and replies fit inside them).
QUERY_SIZE = 1200
#: Nothing larger is accepted: one Ethernet frame without fragmentation.
MAX_PACKET = 1472
MAX_BODY = MAX_PACKET - HEADER_SIZE
#: Announcements are unsolicited, so they get the query size as their ceiling.
MAX_ANNOUNCE = QUERY_SIZE

FLAG_SIGNED = 0x01
FLAG_TRUNCATED = 0x02
_KNOWN_FLAGS = FLAG_SIGNED | FLAG_TRUNCATED

#: Longest text field (characters) a packet may carry.
MAX_TEXT = 128
ShortText = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
Hex32 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{32}$")]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
StId = Annotated[int, msgspec.Meta(ge=-32768, le=32767)]
Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]


class PacketType(IntEnum):
    QUERY = 1
    REPLY = 2
    ANNOUNCE = 3


class BadPacketError(ProtocolError, ValueError):
    """A datagram that is not a well-formed discovery packet; ``code`` names the counter."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class QueryBody(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """What a browser asks: a fresh nonce the reply must echo, and when it asked."""

    nonce: Hex32
    ts: float
    #: Only this device should answer (None: every device).
    uuid: ShortText | None = None


class AdvertBody(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """A reply or announcement: DESIGN §7 metadata, key identity, freshness."""

    uuid: ShortText
    nonce: Hex32
    ts: float
    st_id: StId
    st_ts: float = 0.0
    endpoint: tuple[ShortText, Port] | None = None
    ipaddr: ShortText = ""
    name: ShortText = ""
    serial: ShortText | int = ""
    model_id: ShortText = ""
    version: ShortText = ""
    st_prog: Percent | None = None
    head_module: ShortText | None = None
    error_label: ShortText | None = None
    #: ``SHA256:aa:bb:…`` of the public key (hwfleet.trust.fingerprints format).
    fp: ShortText | None = None
    #: The raw public key, base64; present whenever the packet is signed.
    pk: ShortText | None = None


@dataclass(frozen=True, slots=True)
class Packet:
    """A parsed datagram; ``signed_part`` is what the signature covers."""

    type: PacketType
    flags: int
    body: QueryBody | AdvertBody
    signed_part: bytes
    signature: bytes | None
    size: int

    @property
    def signed(self) -> bool:
        return self.signature is not None

    @property
    def truncated(self) -> bool:
        return bool(self.flags & FLAG_TRUNCATED)


def new_nonce() -> str:
    return secrets.token_hex(16)


def build_query(
    nonce: str | None = None, *, ts: float | None = None, uuid: str | None = None
) -> tuple[bytes, str]:
    """A padded query and its nonce."""
    nonce = nonce or new_nonce()
    when = time.time() if ts is None else ts
    body = msgspec.json.encode(QueryBody(nonce=nonce, ts=when, uuid=uuid))
    head = HEADER.pack(MAGIC, VERSION, PacketType.QUERY, 0, 0, len(body))
    packet = head + body
    return packet + bytes(max(0, QUERY_SIZE - len(packet))), nonce


def _frame(kind: PacketType, flags: int, body: bytes, key: Ed25519PrivateKey | None) -> bytes:
    if key is not None:
        flags |= FLAG_SIGNED
    head = HEADER.pack(MAGIC, VERSION, kind, flags, 0, len(body)) + body
    return head + key.sign(head) if key is not None else head


def minimal(body: AdvertBody) -> AdvertBody:
    """The truncated form: identity, status and where to connect; descriptive text dropped."""
    return AdvertBody(
        uuid=body.uuid,
        nonce=body.nonce,
        ts=body.ts,
        st_id=body.st_id,
        st_ts=body.st_ts,
        st_prog=body.st_prog,
        endpoint=body.endpoint,
        ipaddr=body.ipaddr,
        fp=body.fp,
        pk=body.pk,
    )


def build_advert(
    kind: PacketType, body: AdvertBody, key: Ed25519PrivateKey | None, limit: int
) -> bytes | None:
    """A reply/announcement no larger than ``limit``: full, else truncated, else None."""
    if key is not None:
        raw = public_raw(key)
        body = msgspec.structs.replace(body, fp=fingerprint(raw), pk=base64.b64encode(raw).decode())
    packet = _frame(kind, 0, msgspec.json.encode(body), key)
    if len(packet) <= limit:
        return packet
    packet = _frame(kind, FLAG_TRUNCATED, msgspec.json.encode(minimal(body)), key)
    return packet if len(packet) <= limit else None


def parse(data: bytes) -> Packet:
    """Parse one datagram or raise ``BadPacketError`` saying exactly what is wrong."""
    size = len(data)
    if size > MAX_PACKET:
        raise BadPacketError("oversized", f"{size} bytes, more than the {MAX_PACKET}-byte limit")
    if size < HEADER_SIZE:
        raise BadPacketError("short", f"{size} bytes, shorter than the {HEADER_SIZE}-byte header")
    magic, version, kind, flags, reserved, length = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BadPacketError("magic", f"magic {magic!r} is not {MAGIC!r}")
    if version != VERSION:
        raise BadPacketError(
            "version", f"unsupported version {version} (this side speaks {VERSION})"
        )
    try:
        ptype = PacketType(kind)
    except ValueError:
        raise BadPacketError("type", f"unknown packet type {kind}") from None
    if flags & ~_KNOWN_FLAGS or reserved:
        raise BadPacketError("flags", f"unknown flag bits 0x{flags:02x}/reserved 0x{reserved:02x}")
    end = HEADER_SIZE + length
    if length == 0 or end > size:
        raise BadPacketError("truncated", f"body length {length} does not fit in {size} bytes")
    signature: bytes | None = None
    if ptype is PacketType.QUERY:
        if flags:
            raise BadPacketError("flags", "a query carries no flags")
        if size < QUERY_SIZE:
            raise BadPacketError("unpadded", f"query of {size} bytes, not padded to {QUERY_SIZE}")
        if data.count(0, end) != size - end:
            raise BadPacketError("padding", "query padding is not all zero bytes")
    else:
        tail = size - end
        expected = SIGNATURE_SIZE if flags & FLAG_SIGNED else 0
        if tail != expected:
            raise BadPacketError("length", f"{tail} bytes after the body, expected {expected}")
        if expected:
            signature = bytes(data[end:])
    raw_body = bytes(data[HEADER_SIZE:end])
    body = _decode_body(ptype, raw_body)
    if isinstance(body, AdvertBody):
        _check_advert(body, signed=signature is not None)
    else:
        _check_ts(body.ts)
    return Packet(ptype, flags, body, bytes(data[:end]), signature, size)


def _decode_body(ptype: PacketType, raw: bytes) -> QueryBody | AdvertBody:
    kind: type[QueryBody] | type[AdvertBody] = (
        QueryBody if ptype is PacketType.QUERY else AdvertBody
    )
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        schema = ptype.name.lower()
        raise BadPacketError("field", f"body does not match the {schema} schema: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadPacketError("json", f"body is not a JSON object: {exc}") from None
    except UnicodeDecodeError:
        # msgspec reports invalid UTF-8 inside strings this way, not as a DecodeError.
        raise BadPacketError("json", "body is not valid UTF-8") from None


def _check_ts(ts: float) -> None:
    if not math.isfinite(ts) or ts < 0:
        raise BadPacketError("field", f"timestamp {ts!r} is not a finite, non-negative number")


def _check_advert(body: AdvertBody, *, signed: bool) -> None:
    _check_ts(body.ts)
    _check_ts(body.st_ts)
    try:
        canonical = str(uuidlib.UUID(body.uuid))
    except ValueError:
        raise BadPacketError("field", f"uuid {body.uuid!r} is not a UUID") from None
    if canonical != body.uuid:
        raise BadPacketError("field", f"uuid {body.uuid!r} is not in canonical lower-case form")
    if body.ipaddr:
        _check_ip(body.ipaddr, "ipaddr")
    if body.endpoint is not None:
        _check_ip(body.endpoint[0], "endpoint host")
    if signed and body.pk is None:
        raise BadPacketError("field", "a signed packet must carry its public key (pk)")
    if body.pk is not None:
        try:
            raw = base64.b64decode(body.pk, validate=True)
        except (binascii.Error, ValueError):
            raise BadPacketError("field", "pk is not base64") from None
        if len(raw) != 32:
            raise BadPacketError("field", f"pk is {len(raw)} bytes, an Ed25519 key is 32")
        if body.fp != fingerprint(raw):
            raise BadPacketError("field", "fp is not the fingerprint of pk")


def _check_ip(text: str, what: str) -> None:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise BadPacketError("field", f"{what} {text!r} is not an IP address") from None


def public_key_of(body: AdvertBody) -> bytes | None:
    """The raw public key a (validated) advert carries."""
    return base64.b64decode(body.pk) if body.pk is not None else None
