"""A small HTTP/1.1 GET client for the poll path: keep-alive connections, llhttp parsing.

A Redfish poll is one GET of a small JSON document from each of hundreds of BMCs every few
seconds. With aiohttp's client the request and decode measured about 0.6 ms of CPU per
poll (building the request object, header multidicts, URL handling, its connection-pool
bookkeeping in Python), most of the 1 ms budget (bench/pollers.py). This client does only
what a poll needs: the request bytes are built once per BMC and path, responses are parsed
by llhttp (httptools, the parser uvicorn uses), and each BMC keeps up to
:data:`PER_ORIGIN` idle connections.

It is deliberately narrow: GET only, no redirects, no cookies, no proxies, no
compression; a body over :data:`MAX_BODY` or a malformed response closes the connection
and fails the request. TLS verifies the BMC's certificate unless the record says not to.
A request on a reused connection the BMC closed meanwhile (its keep-alive ran out) is
retried once on a new connection: GET is safe to repeat.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

import httptools

#: Idle keep-alive connections kept per BMC (a BMC is polled a few times a minute).
PER_ORIGIN = 2
#: The largest response body accepted (a SEL of 1000 entries is far smaller).
MAX_BODY = 16 << 20


class HttpError(Exception):
    """The response could not be read: malformed, too large, or cut off."""


class Origin:
    """Where one BMC's service is: scheme, host and port, and how to reach it."""

    __slots__ = ("host", "hostport", "port", "ssl")

    def __init__(self, url: str, *, verify: bool) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        default = self.port == (443 if parts.scheme == "https" else 80)
        name = f"[{self.host}]" if ":" in self.host else self.host
        self.hostport = name if default else f"{name}:{self.port}"
        self.ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self.ssl = _contexts(verify)


_SSL: dict[bool, ssl.SSLContext] = {}


def _contexts(verify: bool) -> ssl.SSLContext:
    # One context per mode, shared: building one loads the CA store (milliseconds).
    ctx = _SSL.get(verify)
    if ctx is None:
        ctx = ssl.create_default_context()
        if not verify:  # the operator said --insecure for this BMC
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        _SSL[verify] = ctx
    return ctx


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, the response parsed as it arrives."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.chunks: list[bytes] = []
        self.size = 0
        self.status = 0
        self.received = False
        self.headers_done = False
        self.keep_alive = True
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            # A callback's own error (a body too large) arrives wrapped by the parser.
            cause = exc.__context__
            self._fail(cause if isinstance(cause, HttpError) else HttpError(f"malformed: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.headers_done and not self.keep_alive:  # a body delimited by the close
            waiter.set_result((self.status, b"".join(self.chunks)))
        else:
            waiter.set_exception(ConnectionResetError("the BMC closed the connection"))

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > MAX_BODY:
            raise HttpError(f"response body over {MAX_BODY} bytes")
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result((self.status, b"".join(self.chunks)))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def request(self, data: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.chunks, self.size, self.received, self.headers_done = [], 0, False, False
        self.transport.write(data)
        return await self.waiter


class HttpPool:
    """Keep-alive GETs to many origins; the caller bounds each call with a timeout."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int, int], list[_Connection]] = {}

    async def get(self, origin: Origin, request: bytes) -> tuple[int, bytes]:
        """Send the prepared ``request`` (:func:`build_request`); ``(status, body)``."""
        key = (origin.host, origin.port, id(origin.ssl))
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            try:
                return self._keep(key, conn, await conn.request(request))
            except ConnectionResetError:
                if conn.received:
                    raise
                # The BMC closed it while idle: try once more on a new connection.
                break
            except BaseException:
                conn.close()
                raise
        conn = await self._connect(origin)
        try:
            return self._keep(key, conn, await conn.request(request))
        except BaseException:
            conn.close()
            raise

    def _keep(
        self, key: tuple[str, int, int], conn: _Connection, answer: tuple[int, bytes]
    ) -> tuple[int, bytes]:
        idle = self._idle.setdefault(key, [])
        if conn.keep_alive and not conn.closed and len(idle) < PER_ORIGIN:
            conn.waiter = None
            idle.append(conn)
        else:
            conn.close()
        return answer

    async def _connect(self, origin: Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            _Connection,
            origin.host,
            origin.port,
            ssl=origin.ssl,
            server_hostname=origin.host if origin.ssl is not None else None,
        )
        return conn

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


def build_request(origin: Origin, path: str, headers: dict[str, str]) -> bytes:
    """The bytes of ``GET path`` to ``origin`` with ``headers``; refuses CR/LF injection."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {origin.hostport}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if any("\r" in line or "\n" in line for line in lines):
        raise ValueError("a request line or header holds a line break")
    if any(c in path for c in " \t"):
        raise ValueError(f"a path with white space: {path!r}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def describe(exc: BaseException) -> str:
    """A short text for an error of this client (no request bytes, so no credentials)."""
    detail = str(exc)  # OSError: "[Errno 111] Connect call failed ('10.0.0.5', 443)"
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
