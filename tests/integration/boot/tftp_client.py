"""A small blocking TFTP client for tests (RFC 1350 read with RFC 2347 options)."""

from __future__ import annotations

import socket
import struct


class TftpClientError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"TFTP error {code}: {message}")
        self.code = code


def tftp_get(
    host: str, port: int, name: str, options: dict[str, str] | None = None, timeout: float = 5.0
) -> tuple[bytes, dict[str, str]]:
    """The file's bytes and the options the server acknowledged."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    try:
        request = struct.pack("!H", 1) + name.encode() + b"\0octet\0"
        for key, value in (options or {}).items():
            request += key.encode() + b"\0" + value.encode() + b"\0"
        sock.sendto(request, (host, port))
        blksize = 512
        acked: dict[str, str] = {}
        data = bytearray()
        expected = 1
        for _ in range(1_000_000):  # bounded: more blocks than any test file has
            packet, peer = sock.recvfrom(70000)
            opcode = struct.unpack("!H", packet[:2])[0]
            if opcode == 5:
                code = struct.unpack("!H", packet[2:4])[0]
                raise TftpClientError(code, packet[4:].split(b"\0")[0].decode())
            if opcode == 6:
                words = packet[2:].split(b"\0")[:-1]
                acked = {words[i].decode(): words[i + 1].decode() for i in range(0, len(words), 2)}
                blksize = int(acked.get("blksize", 512))
                sock.sendto(struct.pack("!HH", 4, 0), peer)
                continue
            block = struct.unpack("!H", packet[2:4])[0]
            if block == expected & 0xFFFF:
                data += packet[4:]
                expected += 1
            sock.sendto(struct.pack("!HH", 4, block), peer)
            if block == (expected - 1) & 0xFFFF and len(packet) - 4 < blksize:
                return bytes(data), acked
        raise AssertionError("transfer did not end")
    finally:
        sock.close()
