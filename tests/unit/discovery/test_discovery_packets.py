"""Packet format: round trips, every rejection reason, and the size rule under hypothesis."""

from __future__ import annotations

import base64
import contextlib
import uuid

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwfleet.discovery import (
    MAX_PACKET,
    QUERY_SIZE,
    AdvertBody,
    BadPacketError,
    PacketType,
    QueryBody,
    build_advert,
    build_query,
    fingerprint,
    parse,
    public_raw,
    verify,
)
from hwfleet.discovery.packets import FLAG_SIGNED, FLAG_TRUNCATED, HEADER, MAGIC
from hwfleet.discovery.responder import advert_from

from .conftest import make_meta


def advert(**changes: object) -> AdvertBody:
    return advert_from(make_meta(**changes), nonce="ab" * 16, ts=1_700_000_000.0)


def frame(kind: int, body: bytes, *, flags: int = 0, version: int = 1, tail: bytes = b"") -> bytes:
    return HEADER.pack(MAGIC, version, kind, flags, 0, len(body)) + body + tail


def test_query_is_padded_and_round_trips() -> None:
    data, nonce = build_query(uuid=str(uuid.UUID(int=7)))
    assert len(data) == QUERY_SIZE
    packet = parse(data)
    assert packet.type is PacketType.QUERY
    assert isinstance(packet.body, QueryBody)
    assert packet.body.nonce == nonce and packet.body.uuid == str(uuid.UUID(int=7))


def test_signed_reply_round_trips_and_verifies(key: Ed25519PrivateKey) -> None:
    data = build_advert(PacketType.REPLY, advert(), key, limit=QUERY_SIZE)
    assert data is not None
    packet = parse(data)
    assert packet.signed and not packet.truncated
    assert isinstance(packet.body, AdvertBody)
    assert packet.body.fp == fingerprint(public_raw(key))
    assert packet.body.serial == 1001 and packet.body.endpoint == ("127.1.0.1", 12345)
    assert packet.signature is not None
    assert verify(public_raw(key), packet.signature, packet.signed_part)
    other = Ed25519PrivateKey.generate()
    assert not verify(public_raw(other), packet.signature, packet.signed_part)


def test_unsigned_reply_has_no_signature_or_key() -> None:
    data = build_advert(PacketType.ANNOUNCE, advert(), None, limit=QUERY_SIZE)
    assert data is not None
    packet = parse(data)
    assert not packet.signed and packet.type is PacketType.ANNOUNCE
    assert isinstance(packet.body, AdvertBody) and packet.body.pk is None


def test_big_metadata_is_truncated_to_fit_then_refused(key: Ed25519PrivateKey) -> None:
    body = advert(name="n" * 128, model_id="m" * 128, version="v" * 128, error_label="e" * 128)
    full = build_advert(PacketType.REPLY, body, key, limit=MAX_PACKET)
    assert full is not None and not parse(full).truncated
    small = build_advert(PacketType.REPLY, body, key, limit=len(full) - 1)
    assert small is not None and len(small) < len(full)
    packet = parse(small)
    assert packet.truncated and packet.flags & FLAG_TRUNCATED
    assert isinstance(packet.body, AdvertBody) and packet.body.name == ""
    assert packet.body.uuid == body.uuid and packet.body.st_id == body.st_id
    assert build_advert(PacketType.REPLY, body, key, limit=100) is None


def test_tampered_signed_packet_fails_verification(key: Ed25519PrivateKey) -> None:
    data = bytearray(build_advert(PacketType.REPLY, advert(), key, limit=QUERY_SIZE) or b"")
    data[data.index(b"rack-1")] ^= 0x20  # "Rack-1": still valid JSON, different content
    packet = parse(bytes(data))
    assert packet.signature is not None
    assert not verify(public_raw(key), packet.signature, packet.signed_part)


GOOD_BODY = msgspec.json.encode(advert())


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "short"),
        (b"HWFD\x01", "short"),
        (bytes(MAX_PACKET + 1), "oversized"),
        (frame(2, GOOD_BODY).replace(b"HWFD", b"XXXX"), "magic"),
        (frame(2, GOOD_BODY, version=2), "version"),
        (frame(9, GOOD_BODY), "type"),
        (frame(2, GOOD_BODY, flags=0x80), "flags"),
        (frame(2, GOOD_BODY)[:-5], "truncated"),
        (HEADER.pack(MAGIC, 1, 2, 0, 0, 0), "truncated"),
        (frame(2, GOOD_BODY, tail=b"x"), "length"),
        (frame(2, GOOD_BODY, flags=FLAG_SIGNED), "length"),
        (frame(2, b"{not json"), "json"),
        (frame(2, b"[1, 2]"), "field"),
        (frame(2, b'{"uuid": "\x80"}'), "json"),
        (frame(1, b'{"nonce": "' + b"ab" * 16 + b'", "ts": 1}'), "unpadded"),
        (frame(1, b'{"nonce": "' + b"ab" * 16 + b'", "ts": 1}', tail=b"\x01" * 1200), "padding"),
        (frame(1, b'{"nonce": "xyz", "ts": 1}', tail=bytes(1200)), "field"),
        (frame(1, b'{"nonce": "' + b"ab" * 16 + b'", "ts": -5}', tail=bytes(1200)), "field"),
    ],
)
def test_malformed_packets_are_rejected_with_a_reason(data: bytes, code: str) -> None:
    with pytest.raises(BadPacketError) as info:
        parse(data)
    assert info.value.code == code
    assert info.value.reason


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"uuid": "not-a-uuid"}, "not a UUID"),
        ({"uuid": "ABCDEF00-0000-0000-0000-000000000001"}, "canonical"),
        ({"ipaddr": "999.1.1.1"}, "not an IP"),
        ({"endpoint": ("host.example", 1)}, "not an IP"),
        ({"pk": base64.b64encode(b"short").decode()}, "Ed25519"),
        ({"pk": base64.b64encode(bytes(32)).decode(), "fp": "SHA256:00"}, "fingerprint"),
        ({"st_prog": 101.0}, "schema"),
        ({"unknown_field": 1}, "schema"),
    ],
)
def test_bad_advert_fields_are_rejected(changes: dict[str, object], reason: str) -> None:
    doc = msgspec.to_builtins(advert())
    doc.update(changes)
    with pytest.raises(BadPacketError) as info:
        parse(frame(2, msgspec.json.encode(doc)))
    assert info.value.code == "field" and reason in info.value.reason


def test_signed_flag_without_public_key_is_rejected() -> None:
    with pytest.raises(BadPacketError, match="public key"):
        parse(frame(2, GOOD_BODY, flags=FLAG_SIGNED, tail=bytes(64)))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=MAX_PACKET + 64))
def test_arbitrary_bytes_never_crash_the_parser(data: bytes) -> None:
    with contextlib.suppress(BadPacketError):
        parse(data)


VALID = [
    build_query()[0],
    build_advert(PacketType.REPLY, advert(), Ed25519PrivateKey.generate(), limit=QUERY_SIZE),
    build_advert(PacketType.ANNOUNCE, advert(), None, limit=QUERY_SIZE),
]


@settings(max_examples=400)
@given(
    st.sampled_from(VALID),
    st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=6),
    st.integers(0, 2000),
)
def test_mutated_packets_only_ever_raise_bad_packet(
    base: bytes | None, flips: list[tuple[int, int]], cut: int
) -> None:
    assert base is not None
    data = bytearray(base)
    for where, value in flips:
        if data:
            data[where % len(data)] = value
    with contextlib.suppress(BadPacketError):
        parse(bytes(data[: len(data) - cut % (len(data) + 1)]))


text = st.text(max_size=128)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=text,
    model_id=text,
    version=text,
    head=st.none() | text,
    label=st.none() | text,
    serial=st.integers(-(2**63), 2**63 - 1) | text,
    prog=st.none() | st.floats(0, 100),
    query_size=st.integers(QUERY_SIZE, MAX_PACKET),
    signed=st.booleans(),
)
def test_a_reply_is_never_larger_than_its_query(
    name: str,
    model_id: str,
    version: str,
    head: str | None,
    label: str | None,
    serial: int | str,
    prog: float | None,
    query_size: int,
    signed: bool,
) -> None:
    body = advert(
        name=name,
        model_id=model_id,
        version=version,
        head_module=head,
        error_label=label,
        serial=serial,
        st_prog=prog,
    )
    key = Ed25519PrivateKey.generate() if signed else None
    reply = build_advert(PacketType.REPLY, body, key, limit=query_size)
    assert reply is not None, "the minimal form always fits a padded query"
    assert len(reply) <= query_size
    parsed = parse(reply)
    assert isinstance(parsed.body, AdvertBody) and parsed.body.uuid == body.uuid


def test_untidy_runtime_metadata_still_makes_a_valid_packet(key: Ed25519PrivateKey) -> None:
    meta = make_meta(
        uuid="ABCDEF00-0000-0000-0000-000000000001",
        name="x" * 300,
        serial="s" * 200,
        ipaddr="not-an-ip",
        endpoint=("localhost", 7800),
        st_prog=150.0,
    )
    data = build_advert(PacketType.REPLY, advert_from(meta, nonce="ab" * 16, ts=1.0), key, 1200)
    assert data is not None
    body = parse(data).body
    assert isinstance(body, AdvertBody)
    assert body.uuid == "abcdef00-0000-0000-0000-000000000001"
    assert len(body.name) == 128 and body.serial == "s" * 128
    assert body.ipaddr == "" and body.endpoint is None and body.st_prog == 100.0
