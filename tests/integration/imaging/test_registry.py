"""The image registry through the real CLI and REST API, and its mutual-TLS image server."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import blake3
import httpx
import pytest
import zstandard
from tests.conftest import service_missing
from tests.integration.controller.conftest import cli
from tests.integration.imaging.conftest import MIB, add_image, image_port
from tests.integration.imaging.enroll import enrolled_identity

from hwfleet.agent.imaging.source import ImageClient, ImageSourceError, UnknownImageError
from hwfleet.controller.app import Controller
from hwfleet.trust.identity import AgentIdentity
from hwfleet.trust.tls import enrolled_context


async def test_add_list_show_delete_each_format(controller: Controller, tmp_path: Path) -> None:
    disk = os.urandom(2 * MIB) + bytes(2 * MIB)
    files = {
        "raw": tmp_path / "a.raw",
        "raw.gz": tmp_path / "a.raw.gz",
        "raw.zst": tmp_path / "a.raw.zst",
    }
    files["raw"].write_bytes(disk)
    files["raw.gz"].write_bytes(gzip.compress(disk[: 2 * MIB]) + gzip.compress(disk[2 * MIB :]))
    files["raw.zst"].write_bytes(zstandard.ZstdCompressor().compress(disk))
    added = {}
    for fmt, path in files.items():
        doc = await add_image(controller, path, "--name", f"img-{fmt}")
        data = path.read_bytes()
        assert doc["format"] == fmt
        assert doc["sha256"] == hashlib.sha256(data).hexdigest()
        assert doc["blake3"] == blake3.blake3(data).hexdigest()
        assert doc["size"] == len(data)
        assert doc["disk_size"] == len(disk)  # measured through the decompression
        assert doc["name"] == f"img-{fmt}"
        added[fmt] = doc
    code, out, _ = await cli(controller, "images", "list", "--json")
    assert code == 0
    assert {row["id"] for row in json.loads(out)} == {d["id"] for d in added.values()}
    code, out, _ = await cli(controller, "images", "show", added["raw"]["id"])
    assert code == 0 and added["raw"]["sha256"] in out and added["raw"]["blake3"] in out
    code, out, _ = await cli(controller, "images", "show", added["raw"]["id"], "--json")
    assert code == 0 and json.loads(out) == added["raw"]
    stored = controller.images.path(added["raw"]["id"])
    assert stored.read_bytes() == disk
    code, _, _ = await cli(controller, "images", "delete", added["raw"]["id"])
    assert code == 0 and not stored.exists()
    code, _, err = await cli(controller, "images", "show", added["raw"]["id"])
    assert code == 1 and "404" in err


async def test_qcow2_is_converted_to_raw(controller: Controller, tmp_path: Path) -> None:
    if shutil.which("qemu-img") is None:
        service_missing("qemu-img (qemu-utils) is not installed")
    raw = tmp_path / "src.raw"
    raw.write_bytes(os.urandom(MIB) + bytes(3 * MIB))
    qcow = tmp_path / "src.qcow2"
    convert = ["qemu-img", "convert", "-O", "qcow2", str(raw), str(qcow)]
    await asyncio.to_thread(subprocess.run, convert, check=True)
    doc = await add_image(controller, qcow)
    assert (doc["source_format"], doc["format"]) == ("qcow2", "raw")
    assert doc["sha256"] == hashlib.sha256(raw.read_bytes()).hexdigest()
    assert doc["blake3"] == blake3.blake3(raw.read_bytes()).hexdigest()  # of the raw disk
    assert doc["name"] == "src.qcow2"


async def test_bad_uploads_are_refused_and_leave_nothing(
    controller: Controller, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.raw"
    empty.write_bytes(b"")
    code, _, err = await cli(controller, "images", "add", str(empty))
    assert code == 1 and "empty" in err
    bad_gz = tmp_path / "bad.raw.gz"
    bad_gz.write_bytes(b"\x1f\x8b\x08\x00" + os.urandom(4096))
    code, _, err = await cli(controller, "images", "add", str(bad_gz))
    assert code == 1 and "gzip" in err
    bad_qcow = tmp_path / "bad.qcow2"
    bad_qcow.write_bytes(b"QFI\xfb" + os.urandom(4096))
    code, _, err = await cli(controller, "images", "add", str(bad_qcow))
    assert code == 1 and "qcow2" in err
    assert list(controller.images.directory.iterdir()) == []
    code, out, _ = await cli(controller, "images", "list", "--json")
    assert json.loads(out) == []
    # Without the operator token the body is never read.
    async with httpx.AsyncClient(base_url=controller.api_url) as client:
        reply = await client.post("/api/v1/images?name=x", content=b"x" * 1024)
    assert reply.status_code == 401


def download(client: ImageClient, image_id: str, offset: int, size: int) -> bytes:
    transfer = client.open(image_id, offset, size)
    buffer = bytearray(size - offset)
    view, done = memoryview(buffer), 0
    try:
        while count := transfer.readinto(view[done:]):
            done += count
    finally:
        transfer.close()
    return bytes(buffer[:done])


def _tls(port: int, context: ssl.SSLContext, request: bytes) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw) as sock,
    ):
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


async def test_image_server_needs_an_enrolled_certificate_and_serves_ranges(
    controller: Controller, tmp_path: Path
) -> None:
    path = tmp_path / "r.raw"
    data = os.urandom(3 * MIB + 7)
    path.write_bytes(data)
    doc = await add_image(controller, path)
    port = image_port(controller)

    anonymous = ssl.create_default_context()
    anonymous.check_hostname, anonymous.verify_mode = False, ssl.CERT_NONE
    # TLS 1.3 ends the handshake before the server checks the client: the refusal is an
    # alert on the first read, or a closed connection, never an HTTP answer.
    try:
        answer = await asyncio.to_thread(
            _tls, port, anonymous, f"GET /images/{doc['id']} HTTP/1.1\r\n\r\n".encode()
        )
    except (ssl.SSLError, ConnectionError):
        answer = b""
    assert answer == b""

    identity: AgentIdentity = await enrolled_identity(controller, tmp_path / "dev")
    client = ImageClient("127.0.0.1", port, enrolled_context(identity))
    meta = await asyncio.to_thread(client.meta, doc["id"])
    assert (meta.sha256, meta.size, meta.format) == (doc["sha256"], len(data), "raw")
    assert meta.blake3 == doc["blake3"] and meta.digest.algorithm == "blake3"
    assert await asyncio.to_thread(download, client, doc["id"], 0, meta.size) == data
    assert await asyncio.to_thread(download, client, doc["id"], MIB, meta.size) == data[MIB:]
    with pytest.raises(UnknownImageError, match="unknown image id"):
        await asyncio.to_thread(client.meta, "abcdef123456")
    reply = await asyncio.to_thread(
        _tls,
        port,
        enrolled_context(identity),
        f"GET /images/{doc['id']} HTTP/1.1\r\nRange: bytes={len(data)}-\r\n\r\n".encode(),
    )
    assert reply.startswith(b"HTTP/1.1 416")
    # A truncated file on the controller: the client says so rather than accepting it.
    os.truncate(controller.images.path(doc["id"]), MIB)
    with pytest.raises(ImageSourceError, match="truncated"):
        await asyncio.to_thread(download, client, doc["id"], 0, meta.size)
    # A key the operator rejects is refused at once, certificate or not.
    keys = await controller.keys.list_keys()
    await controller.keys.reject(next(k["id"] for k in keys if k["device_uuid"] == identity.uuid))
    with pytest.raises(ImageSourceError, match="403"):
        await asyncio.to_thread(client.meta, doc["id"])
