"""The MES lookups' HTTP/1.1 client: a bounded keep-alive pool, responses parsed by llhttp.

A scan makes one ``GET deviceInfo/getById?serialno=`` per device on the event loop that
also consumes the replies and writes the results. aiohttp spends about 130 to 150 µs of CPU
on such a request (its request and response objects, header multidicts, yarl URLs, the
connector's bookkeeping in Python); this client spends a fraction of that
(``bench/mes_http.py`` measures both): the request is a byte string built from a prefix
prepared once per client, and the response is parsed by httptools (llhttp, the parser
uvicorn and mes-sim use) straight into status, reason, Content-Type and body.

It does only what a lookup needs, and :class:`~hwfleet.integrations.mes.MesClient`
keeps aiohttp for the rest: plain ``http://`` without a proxy or credentials in the URL
(``https``, a proxy, ``user:pass@`` go through aiohttp), GET only (posts are a few per
scan). What it handles: bodies delimited by Content-Length, chunked or by the close;
keep-alive with at most ``limit`` connections, queued requests waiting for one; a
connect and a read timeout; any status (the caller interprets it). A response that is
malformed, larger than :data:`MAX_BODY` or cut off by the server raises
:class:`HttpError` (or a :class:`ConnectionError`) and closes its connection, so a
broken answer never poisons the next request. A request on a kept-alive connection
that the server closed while it was idle (its keep-alive ran out) is sent once more on
a new connection before any byte of an answer arrived: a GET is safe to repeat.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from hwfleet.http11 import Answer, Http11Connection

#: The largest response body accepted (a MES record is a few hundred bytes).
MAX_BODY = 8 << 20


class LookupPool:
    """GETs to one ``http://`` origin over at most ``limit`` keep-alive connections."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        limit: int,
        connect_timeout: float,
        timeout: float,
        headers: dict[str, str],
        hostport: str,
    ) -> None:
        self.host, self.port = host, port
        self.limit = limit
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": hostport, **headers}.items())
        if "\n" in head.replace("\r\n", "") or "\r" in head.replace("\r\n", ""):
            raise ValueError("a header holds a line break")
        self._head = f" HTTP/1.1\r\n{head}\r\n".encode("latin-1")
        self._idle: list[Http11Connection] = []
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def for_url(
        cls,
        url: str,
        *,
        limit: int,
        connect_timeout: float,
        timeout: float,
        headers: dict[str, str],
    ) -> LookupPool | None:
        """A pool for ``url``'s origin, or None when this client cannot serve that URL."""
        try:
            parts = urlsplit(url)
            port = parts.port or 80
        except ValueError:
            return None
        if parts.scheme != "http" or not parts.hostname or parts.username or parts.password:
            return None
        host = parts.hostname
        name = f"[{host}]" if ":" in host else host
        hostport = name if port == 80 else f"{name}:{port}"
        return cls(
            host,
            port,
            limit=limit,
            connect_timeout=connect_timeout,
            timeout=timeout,
            headers=headers,
            hostport=hostport,
        )

    def request_bytes(self, target: str) -> bytes:
        """``GET target`` with this pool's headers; ``target`` is an encoded path and query."""
        if any(c in target for c in " \t\r\n"):
            raise ValueError(f"a request target with white space: {target!r}")
        return b"GET " + target.encode("latin-1") + self._head

    def _bind(self) -> asyncio.Semaphore:
        # The pool belongs to the event loop that uses it: a client reused on another loop
        # (tests do) starts with fresh connections and a fresh semaphore.
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._slots is None:
            self.close()
            self._loop, self._slots = loop, asyncio.Semaphore(self.limit)
        return self._slots

    async def get(self, request: bytes) -> Answer:
        """Send a prepared :meth:`request_bytes`; raises OSError, TimeoutError or HttpError."""
        async with self._bind():
            idle = self._idle
            while idle:
                conn = idle.pop()
                if conn.closed:
                    continue
                try:
                    return self._keep(conn, await conn.send(request, self.timeout))
                except ConnectionError:
                    if conn.received:
                        raise
                    break  # closed while idle: once more on a new connection
                except BaseException:
                    conn.close()
                    raise
            conn = await self._connect()
            try:
                return self._keep(conn, await conn.send(request, self.timeout))
            except BaseException:
                conn.close()
                raise

    def _keep(self, conn: Http11Connection, answer: Answer) -> Answer:
        if conn.reusable() and len(self._idle) < self.limit:
            self._idle.append(conn)
        else:
            conn.close()
        return answer

    async def _connect(self) -> Http11Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.connect_timeout):
            _, conn = await loop.create_connection(
                lambda: Http11Connection(MAX_BODY), self.host, self.port
            )
        return conn

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
