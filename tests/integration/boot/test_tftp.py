"""The TFTP server on loopback: real clients (tftp-hpa and a python one), iPXE from Debian."""

from __future__ import annotations

import asyncio
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import service_missing
from tests.integration.boot.tftp_client import TftpClientError, tftp_get

from hwfleet.boot.tftp import TftpServer, prepare_root

IPXE = Path("/usr/lib/ipxe")


@pytest.fixture
def ipxe_root(tmp_path: Path) -> Path:
    if not (IPXE / "undionly.kpxe").is_file():
        service_missing("Debian's ipxe package is not installed (/usr/lib/ipxe/undionly.kpxe)")
    root = tmp_path / "tftp"
    assert prepare_root(IPXE, root) == ["undionly.kpxe", "ipxe.efi", "snponly.efi"]
    return root


class Events:
    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []
        self.changed = asyncio.Event()

    async def emit(self, key: str, payload: dict[str, Any]) -> None:
        self.items.append((key, payload))
        self.changed.set()

    async def next(self) -> tuple[str, dict[str, Any]]:
        async with asyncio.timeout(10):
            while not self.items:
                self.changed.clear()
                await self.changed.wait()
        return self.items.pop(0)


async def _identify(ip: str) -> str | None:
    return "node1" if ip == "127.0.0.1" else None


@pytest.fixture
async def server(ipxe_root: Path) -> Any:
    events = Events()
    tftp = TftpServer(ipxe_root, events.emit, _identify, timeout=0.5, retries=2)
    await tftp.start("127.0.0.1", 0)
    yield tftp, events
    await tftp.close()


async def test_tftp_hpa_fetches_undionly(server: Any, tmp_path: Path) -> None:
    tftp, events = server
    if shutil.which("tftp") is None:
        service_missing("tftp-hpa's tftp client is not installed")
    out = tmp_path / "undionly.kpxe"
    host, port = tftp.address
    cmd = ["tftp", "-m", "binary", host, str(port), "-c", "get", "undionly.kpxe", str(out)]
    proc = await asyncio.create_subprocess_exec(*cmd)
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    assert out.read_bytes() == (IPXE / "undionly.kpxe").read_bytes()
    key, payload = await events.next()
    assert key == "tftp.success.node1"
    assert payload["filename"] == "undionly.kpxe"
    assert payload["size"] == out.stat().st_size


@pytest.mark.parametrize(
    ("name", "blksize"),
    [("ipxe.efi", "1468"), ("undionly.kpxe", "8"), ("ipxe.efi", "65464"), ("snponly.efi", "512")],
)
async def test_options_blksize_and_tsize(server: Any, name: str, blksize: str) -> None:
    tftp, events = server
    expected = (IPXE / name).read_bytes()
    data, acked = await asyncio.to_thread(
        tftp_get, *tftp.address, name, {"blksize": blksize, "tsize": "0"}
    )
    assert data == expected
    assert acked == {"blksize": blksize, "tsize": str(len(expected))}
    assert (await events.next())[0] == "tftp.success.node1"


@pytest.mark.parametrize(
    "name", ["../etc/passwd", "/../../etc/passwd", "qemu/../../../etc/passwd", "..\\x"]
)
async def test_traversal_is_refused(server: Any, name: str) -> None:
    tftp, events = server
    with pytest.raises(TftpClientError) as caught:
        await asyncio.to_thread(tftp_get, *tftp.address, name)
    assert caught.value.code == 2
    key, payload = await events.next()
    assert key == "tftp.failure.node1"
    assert payload["error"] == "access violation"


async def test_symlink_out_of_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "secret").write_text("no")
    (tmp_path / "root" / "link").symlink_to(tmp_path / "secret")
    events = Events()
    tftp = TftpServer(tmp_path / "root", events.emit, _identify)
    await tftp.start("127.0.0.1", 0)
    try:
        with pytest.raises(TftpClientError, match="access violation"):
            await asyncio.to_thread(tftp_get, *tftp.address, "link")
    finally:
        await tftp.close()


async def test_missing_file_write_and_garbage(server: Any) -> None:
    tftp, _events = server
    with pytest.raises(TftpClientError) as caught:
        await asyncio.to_thread(tftp_get, *tftp.address, "nope.efi")
    assert caught.value.code == 1
    # A write request and a malformed packet get errors; the server keeps serving.
    reply = await _raw(tftp.address, struct.pack("!H", 2) + b"x\0octet\0")
    assert reply[:4] == struct.pack("!HH", 5, 2)
    reply = await _raw(tftp.address, b"\x00\x01garbage")
    assert reply[:4] == struct.pack("!HH", 5, 4)
    data, _ = await asyncio.to_thread(tftp_get, *tftp.address, "undionly.kpxe")
    assert data == (IPXE / "undionly.kpxe").read_bytes()


async def test_silent_client_fails_the_transfer(server: Any) -> None:
    tftp, events = server
    # Request and never acknowledge: retransmissions are bounded, then a failure event.
    await _raw(tftp.address, struct.pack("!H", 1) + b"undionly.kpxe\0octet\0")
    key, payload = await events.next()
    assert key == "tftp.failure.node1"
    assert payload["error"] == "client stopped answering"


async def _raw(address: tuple[str, int], packet: bytes) -> bytes:
    def exchange() -> bytes:
        import socket

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(packet, address)
            return sock.recvfrom(70000)[0]

    return await asyncio.to_thread(exchange)


def test_tftp_hpa_is_real() -> None:
    if shutil.which("tftp") is None:
        service_missing("tftp-hpa's tftp client is not installed")
    assert subprocess.run(["tftp", "-V"], capture_output=True, timeout=10).returncode == 0
