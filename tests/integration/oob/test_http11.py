"""The poll path's HTTP/1.1 client against small servers on loopback that misbehave on purpose:
chunked and close-delimited bodies, keep-alive reuse, a server that drops idle connections,
oversized and malformed answers, a BMC that goes silent mid-response, TLS with a self-signed
certificate (refused unless the record says --insecure)."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hwfleet.oob.http11 import MAX_BODY, HttpError, HttpPool, Origin, build_request

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self, handler: Handler, ssl_ctx: ssl.SSLContext | None = None) -> None:
        async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(counted, "127.0.0.1", 0, ssl=ssl_ctx)
        self.port = self.server.sockets[0].getsockname()[1]

    async def head(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head)
        return head


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    s = Server()
    yield s
    if s.server is not None:
        s.server.close()
        await s.server.wait_closed()


def request(origin: Origin, path: str = "/redfish/v1") -> bytes:
    return build_request(origin, path, {"Authorization": "Basic c2VjcmV0"})


async def test_keep_alive_chunked_and_close_delimited(server: Server) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await server.head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        head = await server.head(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'3\r\n{"a\r\n5\r\n": 1}\r\n0\r\n\r\n'
        )
        head = await server.head(reader)
        assert head.startswith(b"GET /last HTTP/1.1\r\n")
        writer.write(b"HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\ngone")
        await writer.drain()

    await server.start(handle)
    origin = Origin(f"http://127.0.0.1:{server.port}", verify=True)
    pool = HttpPool()
    try:
        assert await pool.get(origin, request(origin)) == (200, b"{}")
        assert await pool.get(origin, request(origin)) == (200, b'{"a": 1}')
        assert await pool.get(origin, request(origin, "/last")) == (404, b"gone")
    finally:
        pool.close()
    assert server.connections == 1  # all three on one kept-alive connection
    assert server.requests[0].split(b"\r\n")[1] == f"Host: 127.0.0.1:{server.port}".encode()


async def test_a_connection_the_server_dropped_while_idle_is_replaced(server: Server) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()  # then close: the keep-alive ran out on the BMC's side

    await server.start(handle)
    origin = Origin(f"http://127.0.0.1:{server.port}", verify=True)
    pool = HttpPool()
    try:
        for _ in range(3):
            assert await pool.get(origin, request(origin)) == (200, b"{}")
    finally:
        pool.close()
    assert server.connections == 3


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}",  # cut off mid-body
        b"garbage, not HTTP at all\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1) + b"x" * (MAX_BODY + 1),
    ],
    ids=["cut off", "not http", "too large"],
)
async def test_broken_answers_fail_the_request(server: Server, answer: bytes) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.head(reader)
        writer.write(answer)
        await writer.drain()

    await server.start(handle)
    origin = Origin(f"http://127.0.0.1:{server.port}", verify=True)
    pool = HttpPool()
    try:
        with pytest.raises((HttpError, ConnectionError)):
            await pool.get(origin, request(origin))
    finally:
        pool.close()


async def test_a_silent_bmc_is_bounded_by_the_callers_timeout(server: Server) -> None:
    release = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{")
        await release.wait()  # goes away mid-response

    await server.start(handle)
    origin = Origin(f"http://127.0.0.1:{server.port}", verify=True)
    pool = HttpPool()
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await pool.get(origin, request(origin))
    finally:
        release.set()
        pool.close()


def test_requests_refuse_line_breaks() -> None:
    origin = Origin("https://bmc.example:8443/", verify=True)
    assert request(origin).startswith(b"GET /redfish/v1 HTTP/1.1\r\nHost: bmc.example:8443\r\n")
    with pytest.raises(ValueError, match="line break"):
        build_request(origin, "/x\r\nEvil: 1", {})
    with pytest.raises(ValueError, match="line break"):
        build_request(origin, "/x", {"Authorization": "Basic a\nb"})
    with pytest.raises(ValueError, match="not an http"):
        Origin("ftp://bmc", verify=True)


def self_signed(tmp: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    return ctx


async def test_tls_verifies_unless_told_not_to(server: Server, tmp_path: Path) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()

    await server.start(handle, self_signed(tmp_path))
    pool = HttpPool()
    try:
        strict = Origin(f"https://127.0.0.1:{server.port}", verify=True)
        with pytest.raises(ssl.SSLCertVerificationError):
            await pool.get(strict, request(strict))
        lax = Origin(f"https://127.0.0.1:{server.port}", verify=False)
        assert await pool.get(lax, request(lax)) == (200, b"{}")
        assert await pool.get(lax, request(lax)) == (200, b"{}")
    finally:
        pool.close()
