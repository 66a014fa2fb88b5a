"""RequestGuard on its own: what it answers, and how much of a body the application sees."""

from __future__ import annotations

import json
from typing import Any

from hwfleet.api.limits import DEFAULT_LIMIT, MIB, RequestGuard, route_limit

TOKEN = "s3cret-operator-token"


class Recorder:
    """A downstream application that reads the whole body, then answers 200."""

    def __init__(self) -> None:
        self.called = False
        self.body = b""
        self.saw_disconnect = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.called = True
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.saw_disconnect = True
                raise ConnectionError("client went away")  # what a framework would do
            self.body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def call(
    path: str,
    chunks: list[bytes],
    *,
    token: str | None = TOKEN,
    length: str | None = None,
    max_body: int = 2 * MIB,
) -> tuple[Recorder, list[dict[str, Any]], int]:
    app = Recorder()
    headers = [(b"content-type", b"application/json")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    if length is not None:
        headers.append((b"content-length", length.encode()))
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    pulled = 0
    pending = list(chunks)

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        chunk = pending.pop(0)
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await RequestGuard(app, token=TOKEN, max_body=max_body)(scope, receive, send)
    return app, sent, pulled


def status_and_detail(sent: list[dict[str, Any]]) -> tuple[int, str]:
    assert sent[0]["type"] == "http.response.start"
    return sent[0]["status"], json.loads(sent[1]["body"])["detail"]


async def test_without_the_token_nothing_is_read() -> None:
    app, sent, pulled = await call("/api/v1/devices/ping", [b"x" * 1000], token="wrong")
    assert status_and_detail(sent)[0] == 401 and pulled == 0 and not app.called
    app, sent, pulled = await call("/api/v1/devices/ping", [b"x"], token=None)
    assert status_and_detail(sent)[0] == 401 and pulled == 0


async def test_paths_outside_the_api_need_no_token() -> None:
    app, sent, _ = await call("/healthz", [b""], token=None)
    assert app.called and sent[0]["status"] == 200


async def test_a_declared_length_over_the_cap_is_refused_unread() -> None:
    app, sent, pulled = await call("/api/v1/keys/tokens", [b"{}"], length=str(DEFAULT_LIMIT + 1))
    status, detail = status_and_detail(sent)
    assert status == 413 and pulled == 0 and not app.called
    assert detail == (
        f"a request body of {DEFAULT_LIMIT + 1} bytes is over the {DEFAULT_LIMIT}-byte "
        "limit of POST /api/v1/keys/tokens"
    )


async def test_a_length_that_is_not_a_number_is_refused() -> None:
    _, sent, pulled = await call("/api/v1/scans", [b"{}"], length="12abc")
    assert status_and_detail(sent) == (400, "Content-Length '12abc' is not a number")
    assert pulled == 0


async def test_a_chunked_body_is_cut_at_the_cap_and_the_route_answer_dropped() -> None:
    chunks = [b"x" * (32 * 1024)] * 10  # 320 KiB against the default 64 KiB
    app, sent, pulled = await call("/api/v1/keys/tokens", chunks)
    assert pulled == 3  # 96 KiB read: the third chunk passed the cap
    assert app.saw_disconnect and len(app.body) == 64 * 1024
    status, detail = status_and_detail(sent)
    assert status == 413 and "limit of POST /api/v1/keys/tokens" in detail
    assert len(sent) == 2  # the 413 only


async def test_a_body_within_the_cap_reaches_the_route_whole() -> None:
    chunks = [b"y" * 1000] * 5
    app, sent, pulled = await call("/api/v1/devices/ping", chunks, length="5000")
    assert app.body == b"".join(chunks) and sent[0]["status"] == 200 and pulled == 5


def test_route_caps_never_pass_the_global_setting() -> None:
    assert route_limit("POST", "/api/v1/devices/ping", 2 * MIB) == MIB
    assert route_limit("POST", "/api/v1/devices/abc/run", 2 * MIB) == 2 * MIB
    assert route_limit("POST", "/api/v1/devices/abc/run", 1000) == 1000
    assert route_limit("PUT", "/api/v1/devices/abc/network", 2 * MIB) == DEFAULT_LIMIT
    assert route_limit("GET", "/api/v1/devices/ping", 2 * MIB) == DEFAULT_LIMIT
