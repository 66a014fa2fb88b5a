"""Sessions correlate replies, time out calls, and close on fatal errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hwfleet.protocol import envelope
from hwfleet.protocol.errors import CallTimeoutError, RemoteError, SessionClosedError
from hwfleet.protocol.methods import MethodRegistry
from hwfleet.protocol.session import Session


def pair() -> tuple[Session[str], Session[str]]:
    """Two sessions wired back to back through queues (the carrier is not under test)."""
    registry: MethodRegistry[str] = MethodRegistry()

    async def echo(ctx: str, params: dict[str, Any]) -> dict[str, Any]:
        return {**params, "by": ctx}

    async def boom(ctx: str, params: dict[str, Any]) -> dict[str, Any]:
        from hwfleet.protocol.errors import MethodError

        raise MethodError("boom", "failed")

    registry.add("ping", echo)
    registry.add("boom", boom)
    a_in: asyncio.Queue[bytes] = asyncio.Queue()
    b_in: asyncio.Queue[bytes] = asyncio.Queue()

    async def to_a(frame: bytes) -> None:
        await a_in.put(frame)

    async def to_b(frame: bytes) -> None:
        await b_in.put(frame)

    a: Session[str] = Session(to_b, registry, "a", peer="b")
    b: Session[str] = Session(to_a, registry, "b", peer="a")

    async def pump(q: asyncio.Queue[bytes], s: Session[str]) -> None:
        while await s.handle((await q.get()).rstrip(b"\n")):
            pass

    for q, s in ((a_in, a), (b_in, b)):
        asyncio.get_running_loop().create_task(pump(q, s))
    return a, b


async def test_concurrent_calls_get_their_own_replies() -> None:
    a, _ = pair()
    replies = await asyncio.gather(*(a.call("ping", {"n": i}) for i in range(100)))
    assert [r["n"] for r in replies] == list(range(100))
    assert all(r["by"] == "b" for r in replies)


async def test_error_reply_raises_remote_error() -> None:
    a, _ = pair()
    with pytest.raises(RemoteError, match="boom"):
        await a.call("boom")
    with pytest.raises(RemoteError) as info:
        await a.call("missing")
    assert info.value.code == "unknown_method"


async def test_call_times_out_with_a_clear_message() -> None:
    async def black_hole(frame: bytes) -> None:
        return None

    s: Session[None] = Session(black_hole, MethodRegistry(), None, peer="void")
    with pytest.raises(CallTimeoutError, match=r"ping to void got no reply within 0\.05 s"):
        await s.call("ping", timeout=0.05)


async def test_close_fails_pending_calls_and_later_calls() -> None:
    async def black_hole(frame: bytes) -> None:
        return None

    s: Session[None] = Session(black_hole, MethodRegistry(), None, peer="void")
    pending = asyncio.create_task(s.call("ping", timeout=5))
    await asyncio.sleep(0)  # let the call register before closing
    s.close()
    with pytest.raises(SessionClosedError):
        await pending
    with pytest.raises(SessionClosedError):
        await s.call("ping")


async def test_garbage_gets_fatal_error_and_closes() -> None:
    sent: list[bytes] = []

    async def capture(frame: bytes) -> None:
        sent.append(frame)

    s: Session[None] = Session(capture, MethodRegistry(), None, peer="x")
    assert await s.handle(b"{nope") is False
    assert s.closed
    assert b"fatal_error" in sent[0]


async def test_bad_envelope_with_id_gets_error_and_session_stays_open() -> None:
    sent: list[bytes] = []

    async def capture(frame: bytes) -> None:
        sent.append(frame)

    s: Session[None] = Session(capture, MethodRegistry(), None, peer="x")
    assert await s.handle(b'{"version": "1", "id": "z", "method": "ping", "params": 3}') is True
    reply = envelope.decode(sent[0])
    assert isinstance(reply, envelope.Error) and reply.id == "z"
    assert not s.closed


async def test_begin_sends_at_once_and_the_future_gets_the_reply() -> None:
    """``begin`` writes without waiting (ping --all of 10,000 devices) and the reply resolves it."""
    sent: list[bytes] = []
    a: Session[None] = Session(
        lambda frame: asyncio.sleep(0), MethodRegistry(), None, peer="b", send_now=sent.append
    )
    call_id, future = a.begin("ping", {"nonce": "n1"})
    assert len(sent) == 1 and envelope.decode(sent[0].rstrip(b"\n")).id == call_id  # type: ignore[union-attr]
    await a.handle(envelope.encode(envelope.result(call_id, {"nonce": "n1"})).rstrip(b"\n"))
    assert (await future) == {"nonce": "n1"}
    a.forget(call_id)
    # A reply after forget is dropped, not an error.
    assert await a.handle(envelope.encode(envelope.result(call_id, {})).rstrip(b"\n"))


async def test_begin_refuses_on_a_closed_stream_and_without_send_now() -> None:
    def broken(frame: bytes) -> None:
        raise ConnectionResetError("stream is closed")

    s: Session[None] = Session(
        lambda frame: asyncio.sleep(0), MethodRegistry(), None, peer="gone", send_now=broken
    )
    with pytest.raises(SessionClosedError, match="ping to gone: stream is closed"):
        s.begin("ping")
    s.close()
    with pytest.raises(SessionClosedError):
        s.begin("ping")
    plain: Session[None] = Session(lambda frame: asyncio.sleep(0), MethodRegistry(), None, peer="p")
    assert not plain.can_begin
    with pytest.raises(TypeError, match=r"call\(\)"):
        plain.begin("ping")
