"""A small HTTP/1.1 GET client for the poll path: keep-alive connections, llhttp parsing.

A Redfish poll is one GET of a small JSON document from each of hundreds of BMCs every few
seconds. With aiohttp's client the request and decode measured about 0.6 ms of CPU per
poll (building the request object, header multidicts, URL handling, its connection-pool
bookkeeping in Python), most of the 1 ms budget (bench/pollers.py). This client does only
what a poll needs: the request bytes are built once per BMC and path, responses are parsed
by llhttp (httptools, the parser uvicorn uses; the connection is :mod:`hwfleet.http11`,
shared with the MES lookups), and each BMC keeps up to
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

from hwfleet.http11 import Answer, Http11Connection, HttpError

__all__ = ["MAX_BODY", "HttpError", "HttpPool", "Origin", "build_request", "describe"]

#: Idle keep-alive connections kept per BMC (a BMC is polled a few times a minute).
PER_ORIGIN = 2
#: The largest response body accepted (a SEL of 1000 entries is far smaller).
MAX_BODY = 16 << 20


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


class HttpPool:
    """Keep-alive GETs to many origins; the caller bounds each call with a timeout."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int, int], list[Http11Connection]] = {}

    async def get(self, origin: Origin, request: bytes) -> tuple[int, bytes]:
        """Send the prepared ``request`` (:func:`build_request`); ``(status, body)``."""
        key = (origin.host, origin.port, id(origin.ssl))
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            try:
                return self._keep(key, conn, await conn.send(request))
            except ConnectionError:
                if conn.received:
                    raise
                # The BMC closed it while idle: try once more on a new connection.
                break
            except BaseException:
                conn.close()
                raise
        conn = await self._connect(origin)
        try:
            return self._keep(key, conn, await conn.send(request))
        except BaseException:
            conn.close()
            raise

    def _keep(
        self, key: tuple[str, int, int], conn: Http11Connection, answer: Answer
    ) -> tuple[int, bytes]:
        idle = self._idle.setdefault(key, [])
        if conn.reusable() and len(idle) < PER_ORIGIN:
            idle.append(conn)
        else:
            conn.close()
        return answer.status, answer.body

    async def _connect(self, origin: Origin) -> Http11Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            lambda: Http11Connection(MAX_BODY),
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
