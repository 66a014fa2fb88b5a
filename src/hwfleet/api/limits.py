"""The REST API's front door: the operator token, then a body-size cap, before any body is read.

FastAPI reads and parses a request's body before it runs the route's
dependencies, so the token check in :func:`~hwfleet.api.auth.require_token`
comes too late to protect memory: a 200 MiB request without a token used to be
buffered whole before being refused. :class:`RequestGuard` is a pure ASGI
middleware that looks only at the headers first:

* an ``/api/`` request without the operator token gets 401 and its body is never read
  (except a node's credential on that node's bootstrap pair, :data:`NODE_ROUTE`, which the
  route itself checks against the store);
* a declared ``Content-Length`` above the route's cap gets 413 at once;
* a chunked body is counted as it streams in, and refused with 413 the moment it
  passes the cap (the route then sees a disconnect, and whatever it answers is dropped).

Each route has its own cap (:data:`ROUTE_LIMITS`, else :data:`DEFAULT_LIMIT`), never
above the ``api_max_body`` setting. uvicorn stops reading a socket while the application
is not consuming its body, so a refused body stays in the kernel's buffers, not ours.
"""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp as App
from starlette.types import Message, Receive, Scope, Send

from hwfleet.api.auth import UNAUTHORIZED, token_matches
from hwfleet.workflows.nodecreds import looks_like

KIB = 1024
MIB = 1024 * KIB
#: Any route not listed: small JSON bodies (a rename, a token request, network settings).
DEFAULT_LIMIT = 64 * KIB
#: Routes that legitimately take more: lists of devices, and command parameters up to the
#: protocol's 1 MiB line (the route itself checks the encoded envelope exactly).
ROUTE_LIMITS: tuple[tuple[str, re.Pattern[str], int], ...] = (
    ("POST", re.compile(r"/api/v1/devices/ping"), 1 * MIB),
    ("POST", re.compile(r"/api/v1/devices/[^/]+/run"), 2 * MIB),
    ("POST", re.compile(r"/api/v1/scans"), 1 * MIB),
)
#: The default of the ``api_max_body`` setting: no route accepts more.
DEFAULT_MAX_BODY = 2 * MIB
#: Routes whose body is streamed to disk, never held: ``api_max_body`` does not apply.
STREAMED_ROUTES: tuple[tuple[str, re.Pattern[str], int], ...] = (
    ("POST", re.compile(r"/api/v1/images"), 1 << 42),  # image upload (docs/imaging.md)
    ("POST", re.compile(r"/images/upload"), 1 << 42),  # the dashboard's (docs/dashboard.md)
)


#: The only routes a node's credential (not the operator token) may reach.
NODE_ROUTE = re.compile(r"/api/v1/nodes/[^/]+/commands")


def _node_credential(method: str, path: str, header: str) -> bool:
    scheme, _, supplied = header.partition(" ")
    return (
        method in ("GET", "POST")
        and NODE_ROUTE.fullmatch(path) is not None
        and scheme.lower() == "bearer"
        and looks_like(supplied.strip())
    )


def route_limit(method: str, path: str, max_body: int) -> int:
    """The body cap for one request: its route's, never above ``max_body`` unless streamed."""
    for route_method, pattern, limit in STREAMED_ROUTES:
        if method == route_method and pattern.fullmatch(path):
            return limit
    for route_method, pattern, limit in ROUTE_LIMITS:
        if method == route_method and pattern.fullmatch(path):
            return min(limit, max_body)
    return min(DEFAULT_LIMIT, max_body)


def _too_large(method: str, path: str, limit: int, size: int | None) -> str:
    what = f"a request body of {size} bytes" if size is not None else "the request body"
    return f"{what} is over the {limit}-byte limit of {method} {path}"


async def reply(
    send: Send, status: int, detail: str, headers: dict[str, str] | None = None
) -> None:
    """A complete JSON ``{"detail": ...}`` response, closing the connection."""
    body = json.dumps({"detail": detail}).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class RequestGuard:
    """ASGI middleware: token first, then the body cap, both before the body is read."""

    def __init__(self, app: App, *, token: str, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.token = token
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        authorization = _header(scope, b"authorization") or ""
        if (
            path.startswith("/api/")
            and not token_matches(authorization, self.token)
            and not _node_credential(method, path, authorization)
        ):
            await reply(send, 401, UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
            return
        limit = route_limit(method, path, self.max_body)
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await reply(send, 400, f"Content-Length {declared[:32]!r} is not a number")
                return
            if size > limit:
                await reply(send, 413, _too_large(method, path, limit, size))
                return
        await _Counted(self.app, limit, method, path).run(scope, receive, send)


class _Counted:
    """One request whose body is counted as it arrives (for chunked bodies)."""

    def __init__(self, app: App, limit: int, method: str, path: str) -> None:
        self.app, self.limit, self.method, self.path = app, limit, method, path
        self.received = 0
        self.refused = False
        self.started = False

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request" and not self.refused:
                self.received += len(message.get("body", b""))
                if self.received > self.limit:
                    self.refused = True
                    if not self.started:
                        await reply(send, 413, _too_large(self.method, self.path, self.limit, None))
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if self.refused:
                return  # the 413 has been sent: whatever the route answers goes nowhere
            if message["type"] == "http.response.start":
                self.started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not self.refused:
                raise
