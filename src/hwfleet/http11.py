"""An HTTP/1.1 client connection on an asyncio protocol, its answers parsed by llhttp.

Shared by the clients that make many small requests on the controller's event loop (the
MES lookups, :mod:`hwfleet.integrations.mes_http`; the Redfish polls,
:mod:`hwfleet.oob.http11`), where a general client's per-request objects cost more CPU
than the request itself. httptools (llhttp, the parser uvicorn uses) parses each answer
straight into status, reason, Content-Type and body.

One request at a time per connection. Bodies end by Content-Length, by chunked encoding
or by the close; a body the close cuts short (its length was announced) is an error, as
is a malformed answer, a body over the connection's limit, or an answer nobody asked
for: each fails the request and closes the connection, so a broken answer never
poisons the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import httptools


class HttpError(Exception):
    """The response could not be read: malformed, too large, or not an HTTP/1.x answer."""


class ServerClosedError(ConnectionResetError):
    """The server closed the connection before its answer was complete."""


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP response, read whole."""

    status: int
    reason: str
    content_type: str
    body: bytes


class Http11Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its answer parsed as it arrives."""

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Answer] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.chunks: list[bytes] = []
        self.size = 0
        self.reason = b""
        self.content_type = b""
        #: The answer says where its body ends (Content-Length or chunked), not the close.
        self.delimited = False
        self.headers_done = False
        self.received = False
        self.keep_alive = True
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # nothing asked: a server talking out of turn is not reused
            self.close()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(HttpError("the server switched protocols"))
        except httptools.HttpParserError as exc:
            # A callback's own error (a body too large) arrives wrapped by the parser.
            cause = exc.__context__
            self._fail(cause if isinstance(cause, HttpError) else HttpError(f"malformed: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.headers_done and not self.delimited and exc is None:  # the close ends the body
            self._answer()
        elif exc is not None and isinstance(exc, OSError):
            self._fail(exc)
        else:
            self._fail(ServerClosedError("the server closed the connection"))

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self.waiter is None or self.waiter.done():
            raise HttpError("the server sent an answer nobody asked for")

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"content-type":
            self.content_type = value
        elif lower == b"content-length" or (
            lower == b"transfer-encoding" and b"chunked" in value.lower()
        ):
            self.delimited = True

    def on_headers_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.max_body:
            raise HttpError(f"a response body over {self.max_body} bytes")
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self._answer()

    def _answer(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            status = self.parser.get_status_code()
            waiter.set_result(
                Answer(
                    status,
                    self.reason.decode("latin-1"),
                    self.content_type.decode("latin-1"),
                    b"".join(self.chunks),
                )
            )
        if self.timer is not None:
            self.timer.cancel()

    def _fail(self, exc: BaseException) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.close()

    def _timed_out(self) -> None:
        self._fail(TimeoutError("no answer in time"))

    def close(self) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        if self.transport is not None:
            with contextlib.suppress(RuntimeError):  # its event loop is closed: nothing to do
                self.transport.close()

    def send(self, request: bytes, timeout: float | None = None) -> asyncio.Future[Answer]:
        """Write ``request``; the future gets its answer (or the failure).

        ``timeout`` bounds the whole answer, not each read: a server trickling a byte a
        second must not hold a request for ever. None leaves the bound to the caller.
        """
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        self.chunks, self.size, self.reason, self.content_type = [], 0, b"", b""
        self.delimited = self.headers_done = self.received = False
        if timeout is not None:
            self.timer = loop.call_later(timeout, self._timed_out)
        self.transport.write(request)
        return self.waiter

    def reusable(self) -> bool:
        """The answer is read and the connection may carry another request."""
        self.waiter = self.timer = None
        return self.keep_alive and not self.closed
