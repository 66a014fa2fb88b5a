"""The MES lookups' HTTP client against a scripted server on 127.0.0.1: real sockets, bad answers.

Each test scripts what the server does with each request it reads, in order across
connections: write some bytes, then keep the connection, close it (FIN) or reset it (RST).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from hwfleet.http11 import HttpError, ServerClosedError
from hwfleet.integrations import mes_http
from hwfleet.integrations.mes import MesClient
from hwfleet.integrations.mes_http import LookupPool

RECORD = b'{"info": [{"serialNo": "7", "macInfo": [{"macaddr": "02:00:00:00:00:07"}]}]}'


def ok(body: bytes = RECORD, *extra: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    return head + b"".join(extra) + b"Content-Length: %d\r\n\r\n" % len(body) + body


@dataclass
class Step:
    """What the server does with one request."""

    data: bytes = b""
    then: str = "keep"  # keep | close | reset | silent (answer nothing, keep the connection)


@dataclass
class Scripted:
    steps: list[Step]
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    open_now: int = 0
    most_open: int = 0
    gate: asyncio.Event | None = None
    #: Set once ``want`` requests have arrived.
    want: int = 0
    reached: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                if len(self.requests) == self.want:
                    self.reached.set()
                if self.gate is not None:
                    await self.gate.wait()
                step = self.steps.pop(0) if self.steps else Step(ok())
                writer.write(step.data)
                await writer.drain()
                if step.then == "close":
                    break
                if step.then == "reset":
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_now -= 1
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[tuple[Scripted, str]]:
    scripted = Scripted([])
    srv = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    async with srv:
        yield scripted, f"http://127.0.0.1:{port}/deviceInfo/getById"


async def answers_on_a_new_connection(http: LookupPool, scripted: Scripted) -> None:
    """The next request is answered whole, on a second connection (the first was retired)."""
    assert (await http.get(http.request_bytes("/next"))).body == RECORD
    http.close()
    assert scripted.connections == 2


def pool(url: str, *, limit: int = 4, timeout: float = 5.0) -> LookupPool:
    made = LookupPool.for_url(
        url, limit=limit, connect_timeout=2.0, timeout=timeout, headers={"Accept": "x"}
    )
    assert made is not None
    return made


async def test_keep_alive_reuses_one_connection_and_reads_status_reason_type(
    server: tuple[Scripted, str],
) -> None:
    scripted, url = server
    scripted.steps = [Step(ok()), Step(b"HTTP/1.1 503 Busy Now\r\nContent-Length: 2\r\n\r\nno")]
    http = pool(url)
    first = await http.get(http.request_bytes("/deviceInfo/getById?serialno=7"))
    second = await http.get(http.request_bytes("/deviceInfo/getById?serialno=8"))
    http.close()
    assert (first.status, first.reason, first.content_type, first.body) == (
        200,
        "OK",
        "application/json",
        RECORD,
    )
    assert (second.status, second.reason, second.body) == (503, "Busy Now", b"no")
    assert scripted.connections == 1
    assert scripted.requests[0].startswith(b"GET /deviceInfo/getById?serialno=7 HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:" in scripted.requests[0]
    assert b"\r\nAccept: x\r\n" in scripted.requests[0]


async def test_chunked_and_close_delimited_bodies(server: tuple[Scripted, str]) -> None:
    scripted, url = server
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5\r\n{"inf\r\n4\r\no": \r\n4\r\n"x"}\r\n0\r\n\r\n'
    )
    scripted.steps = [
        Step(chunked),
        Step(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + RECORD, then="close"),
    ]
    http = pool(url)
    first = await http.get(http.request_bytes("/a"))
    second = await http.get(http.request_bytes("/b"))
    http.close()
    assert first.body == b'{"info": "x"}'
    assert second.body == RECORD
    assert scripted.connections == 1


async def test_a_body_cut_short_by_the_close_is_an_error_not_a_short_answer(
    server: tuple[Scripted, str],
) -> None:
    scripted, url = server
    scripted.steps = [Step(ok()[:-10], then="close")]
    http = pool(url)
    with pytest.raises(ServerClosedError):
        await http.get(http.request_bytes("/a"))
    # The connection is gone; the next request gets a new one and a whole answer.
    await answers_on_a_new_connection(http, scripted)


async def test_a_reset_mid_response_is_a_connection_error(server: tuple[Scripted, str]) -> None:
    scripted, url = server
    scripted.steps = [Step(ok()[:-10], then="reset")]
    http = pool(url)
    with pytest.raises(ConnectionResetError):
        await http.get(http.request_bytes("/a"))
    http.close()


@pytest.mark.parametrize(
    "garbage",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
async def test_garbage_is_an_http_error_and_the_connection_is_not_reused(
    server: tuple[Scripted, str], garbage: bytes
) -> None:
    scripted, url = server
    scripted.steps = [Step(garbage)]
    http = pool(url)
    with pytest.raises(HttpError):
        await http.get(http.request_bytes("/a"))
    await answers_on_a_new_connection(http, scripted)


async def test_a_body_over_the_limit_is_refused(
    server: tuple[Scripted, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted, url = server
    monkeypatch.setattr(mes_http, "MAX_BODY", 100)
    scripted.steps = [Step(ok(b"x" * 101))]
    http = pool(url)
    with pytest.raises(HttpError, match="over 100 bytes"):
        await http.get(http.request_bytes("/a"))
    http.close()


@pytest.mark.parametrize(
    "first",
    [
        Step(ok() + ok(b"{}")),  # two answers to one request: the connection is retired
        Step(ok(), then="close"),  # its keep-alive ran out right after: replaced
    ],
    ids=["answer-nobody-asked-for", "closed-while-idle"],
)
async def test_after_a_whole_answer_a_spoiled_connection_is_not_reused(
    server: tuple[Scripted, str], first: Step
) -> None:
    scripted, url = server
    scripted.steps = [first]
    http = pool(url)
    assert (await http.get(http.request_bytes("/a"))).body == RECORD
    await answers_on_a_new_connection(http, scripted)


async def test_no_answer_times_out_and_closes_the_connection(
    server: tuple[Scripted, str],
) -> None:
    scripted, url = server
    scripted.steps = [Step(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{", then="silent")]
    http = pool(url, timeout=0.2)
    with pytest.raises(TimeoutError):
        await http.get(http.request_bytes("/a"))
    await answers_on_a_new_connection(http, scripted)


async def test_at_most_limit_connections_and_queued_requests_all_answered(
    server: tuple[Scripted, str],
) -> None:
    scripted, url = server
    scripted.gate, scripted.want = asyncio.Event(), 3
    http = pool(url, limit=3)
    requests = [asyncio.create_task(http.get(http.request_bytes(f"/{i}"))) for i in range(20)]
    await scripted.reached.wait()  # every connection the pool may open holds a request
    scripted.gate.set()
    answers = await asyncio.gather(*requests)
    http.close()
    assert all(a.body == RECORD for a in answers)
    assert scripted.most_open == 3
    assert scripted.connections == 3


def test_only_plain_http_without_credentials_is_served_here() -> None:
    kw = {"limit": 1, "connect_timeout": 1.0, "timeout": 1.0, "headers": {}}
    assert LookupPool.for_url("https://mes/x", **kw) is None  # type: ignore[arg-type]
    assert LookupPool.for_url("http://u:p@mes/x", **kw) is None  # type: ignore[arg-type]
    assert LookupPool.for_url("http://[::1/x", **kw) is None  # type: ignore[arg-type]
    v6 = LookupPool.for_url("http://[::1]:8080/x", **kw)  # type: ignore[arg-type]
    assert v6 is not None and v6.request_bytes("/x").startswith(
        b"GET /x HTTP/1.1\r\nHost: [::1]:8080\r\n"
    )
    with pytest.raises(ValueError, match="white space"):
        v6.request_bytes("/x HTTP/1.1\r\nEvil: 1")


async def test_mes_client_retries_a_reset_and_a_broken_answer_then_reads_the_record(
    server: tuple[Scripted, str],
) -> None:
    scripted, url = server
    scripted.steps = [Step(ok()[:-5], then="reset"), Step(b"garbage\r\n\r\n"), Step(ok())]
    async with MesClient({"get": url}, retry_for=10.0, backoff=0.01) as mes:
        record = await mes.get_device(7)
    assert record.registered and [m.key for m in record.macs] == ["02:00:00:00:00:07"]
    assert len(scripted.requests) == 3
    assert scripted.requests[2].startswith(b"GET /deviceInfo/getById?serialno=7 HTTP/1.1")


async def test_mes_client_names_a_broken_answer_when_it_gives_up(
    server: tuple[Scripted, str],
) -> None:
    scripted, url = server
    scripted.steps = [Step(b"garbage\r\n\r\n") for _ in range(100)]
    async with MesClient({"get": url}, retry_for=0.3, backoff=0.05) as mes:
        with pytest.raises(Exception, match=r"unreachable \(a broken answer \(malformed"):
            await mes.get_device(7)
