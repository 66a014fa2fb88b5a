"""Serve images to enrolled devices: HTTPS with a required client certificate, and ranges.

The agent gateway's certificate and CA (:mod:`hwfleet.trust.tls`) are reused,
but the handshake *requires* a client certificate here: only a device holding a
certificate this controller issued gets past TLS, and each request is then
checked against the key's current state (a rejected key is refused at once,
like on the gateway). Routes:

- ``GET /images/<id>/meta``: ``{"id", "name", "sha256", "blake3", "size", "format",
  "disk_size"}`` (``blake3`` null for an image registered before it was recorded);
- ``GET|HEAD /images/<id>``: the bytes, with ``Range: bytes=a-b`` (one range) so an
  interrupted download resumes.

A deliberately small HTTP/1.1 server (one request per connection): the agent's
client is ours, and a general web framework would have to be taught to expose
the peer certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from hwfleet.images.registry import ImageNotFoundError, ImageRegistry
from hwfleet.trust.tls import peer_identity

if TYPE_CHECKING:
    from hwfleet.trust.tls import PeerIdentity

log = logging.getLogger(__name__)

HEADER_LIMIT = 16 * 1024
HEADER_TIMEOUT = 15.0
#: Read size while sending an image, and how much the TLS transport may hold unsent.
CHUNK = 1024 * 1024
SEND_BUFFER = 4 * CHUNK
_PATH = re.compile(r"/images/([0-9a-f]{1,64})(/meta)?")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class SessionCheck(Protocol):
    """What the server asks about a certificate's key (``KeyAdmin.check_session``)."""

    async def check_session(self, identity: PeerIdentity) -> bool: ...


@dataclass(frozen=True)
class _Response:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes = b""


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``(start, end_exclusive)`` for one ``bytes=`` range; None if unsatisfiable/unsupported."""
    match = _RANGE.fullmatch(header.strip())
    if match is None or (not match[1] and not match[2]):
        return None
    if not match[1]:  # the last N bytes
        length = int(match[2])
        return (max(0, size - length), size) if length else None
    start = int(match[1])
    end = int(match[2]) + 1 if match[2] else size
    if start >= size or end <= start:
        return None
    return start, min(end, size)


class ImageServer:
    """``await start()`` then serve until ``close()``; ``port`` is the bound port."""

    def __init__(
        self,
        registry: ImageRegistry,
        keys: SessionCheck,
        ssl_context: ssl.SSLContext,
        *,
        host: str,
        port: int,
    ) -> None:
        if ssl_context.verify_mode != ssl.CERT_REQUIRED:
            raise ValueError("the image server needs a context that requires client certificates")
        self.registry = registry
        self.keys = keys
        self.ssl_context = ssl_context
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, ssl=self.ssl_context, limit=HEADER_LIMIT
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("images served to enrolled devices on https://%s:%d", self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._one(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, TimeoutError):
            pass  # the device went away; nothing to answer
        except Exception:
            log.exception("image request failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEADER_TIMEOUT)
        except (asyncio.LimitOverrunError, ValueError):
            await _send(writer, _error(431, "Request Header Fields Too Large", "headers too large"))
            return
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        headers = {}
        for text in lines[1:]:
            name, sep, value = text.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if len(parts) != 3 or parts[0] not in ("GET", "HEAD"):
            await _send(writer, _error(405, "Method Not Allowed", "only GET and HEAD"))
            return
        identity = peer_identity(writer.get_extra_info("ssl_object"))
        if identity is None or not await self.keys.check_session(identity):
            await _send(writer, _error(403, "Forbidden", "this device's key is not accepted"))
            return
        match = _PATH.fullmatch(parts[1])
        if match is None:
            await _send(writer, _error(404, "Not Found", "no such path"))
            return
        try:
            record = await self.registry.get(match[1])
        except ImageNotFoundError as exc:
            await _send(writer, _error(404, "Not Found", str(exc)))
            return
        if match[2]:
            meta = {
                k: getattr(record, k)
                for k in ("id", "name", "sha256", "blake3", "size", "format", "disk_size")
            }
            await _send(writer, _json(200, "OK", meta))
            return
        await self._file(writer, parts[0], record.id, record.size, headers.get("range"))

    async def _file(
        self, writer: asyncio.StreamWriter, method: str, image_id: str, size: int, rng: str | None
    ) -> None:
        start, end, status, reason = 0, size, 200, "OK"
        headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if rng is not None:
            span = parse_range(rng, size)
            if span is None:
                headers["Content-Range"] = f"bytes */{size}"
                await _send(writer, _Response(416, "Range Not Satisfiable", headers))
                return
            start, end = span
            status, reason = 206, "Partial Content"
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        headers["Content-Length"] = str(end - start)
        try:
            # Opening a local file is not worth a thread; reading it is (sendfile below).
            image = open(self.registry.path(image_id), "rb")  # noqa: SIM115, ASYNC230
        except FileNotFoundError:
            await _send(writer, _error(404, "Not Found", f"image {image_id} was deleted"))
            return
        with image:
            await _send(writer, _Response(status, reason, headers))
            if method == "GET" and end > start:
                await _stream_file(writer, image.fileno(), start, end)
        await writer.drain()


async def _stream_file(writer: asyncio.StreamWriter, fd: int, start: int, end: int) -> None:
    """Send bytes ``start``..``end`` of ``fd`` over TLS, reading ahead in a worker thread.

    ``loop.sendfile`` cannot use the kernel's sendfile on a TLS transport and falls back
    to 256 KiB reads, each awaited before the next: here the next 1 MiB read runs while
    the loop encrypts and sends the current one, and the transport may buffer a few
    chunks, so neither the disk nor the socket waits for the other.
    """
    writer.transport.set_write_buffer_limits(high=SEND_BUFFER)
    offset = start
    pending = asyncio.ensure_future(
        asyncio.to_thread(os.pread, fd, min(CHUNK, end - start), offset)
    )
    try:
        while offset < end:
            data = await pending
            if not data:
                raise ConnectionError("the image file ended early")  # truncated on disk
            offset += len(data)
            if offset < end:
                pending = asyncio.ensure_future(
                    asyncio.to_thread(os.pread, fd, min(CHUNK, end - offset), offset)
                )
            writer.write(data)
            await writer.drain()
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await pending


def _json(status: int, reason: str, document: object) -> _Response:
    body = json.dumps(document).encode()
    return _Response(status, reason, {"Content-Type": "application/json"}, body)


def _error(status: int, reason: str, detail: str) -> _Response:
    return _json(status, reason, {"detail": detail})


async def _send(writer: asyncio.StreamWriter, response: _Response) -> None:
    headers = dict(response.headers)
    headers.setdefault("Content-Length", str(len(response.body)))
    headers["Connection"] = "close"
    head = f"HTTP/1.1 {response.status} {response.reason}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    writer.write(head.encode("latin-1") + response.body)
    await writer.drain()
