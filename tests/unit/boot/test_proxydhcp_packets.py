"""proxyDHCP packets: what it answers, what it refuses to read (bad input never crashes it)."""

from __future__ import annotations

import socket
import struct

import pytest

from hwfleet.boot.proxydhcp import (
    ACK,
    OFFER,
    PacketError,
    ProxyDhcp,
    answer,
    boot_file,
    parse,
)

MAC = bytes.fromhex("525400770001")


def request(*options: tuple[int, bytes], kind: int = 1) -> bytes:
    head = struct.pack(
        "!BBBB4sHH4s4s4s4s16s64s128s", 1, 1, 6, 0, b"wxyz", 0, 0x8000, bytes(4), bytes(4),
        bytes(4), bytes(4), MAC + bytes(10), bytes(64), bytes(128),
    )  # fmt: skip
    body = bytes([53, 1, kind]) + b"".join(bytes([c, len(v)]) + v for c, v in options)
    return head + b"\x63\x82\x53\x63" + body + b"\xff"


def test_boot_file_by_client() -> None:
    pxe = (60, b"PXEClient:Arch:00000")
    assert boot_file(parse(request(pxe)), "http://h") == "undionly.kpxe"
    assert boot_file(parse(request(pxe, (93, b"\x00\x07"))), "http://h") == "ipxe.efi"
    assert boot_file(parse(request(pxe, (77, b"iPXE"))), "http://h/") == "http://h/boot/ipxe"


def test_answer_has_no_address_and_echoes_uuid() -> None:
    req = parse(request((60, b"PXEClient"), (97, b"\x00" + bytes(16))))
    reply = parse(answer(req, OFFER, "10.0.0.1", "http://h"))
    assert reply.op == 2
    data = answer(req, ACK, "10.0.0.1", "http://h")
    assert data[16:20] == bytes(4) and data[20:24] == socket.inet_aton("10.0.0.1")
    assert reply.options[53] == bytes([OFFER]) and reply.options[60] == b"PXEClient"
    assert reply.options[97] == b"\x00" + bytes(16)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x01" * 100, request()[:-10] + b"\x3c\x40abc", request()[:236] + b"nope"],
)
def test_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(PacketError):
        parse(data)


class Sent:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, object]] = []

    def sendto(self, data: bytes, addr: object) -> None:
        self.sent.append((data, addr))


def test_only_pxe_clients_get_answers() -> None:
    proxy = ProxyDhcp("10.0.0.1", "http://h", port67=True)
    sink = Sent()
    proxy.transport = sink  # type: ignore[assignment]
    proxy.datagram_received(request(), ("0.0.0.0", 68))  # not PXE
    proxy.datagram_received(b"garbage", ("0.0.0.0", 68))
    proxy.datagram_received(request((60, b"PXEClient"), kind=3), ("0.0.0.0", 68))  # not 4011
    assert sink.sent == []
    proxy.datagram_received(request((60, b"PXEClient")), ("0.0.0.0", 68))
    assert len(sink.sent) == 1 and sink.sent[0][1] == ("<broadcast>", 68)
