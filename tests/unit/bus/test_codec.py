"""Bodies, settle rules and the shared RPC dispatcher."""

from __future__ import annotations

import msgspec
import pytest

from hwfleet.bus import RejectedMessageError, RpcError
from hwfleet.bus.codec import (
    REPLY_ERROR,
    REPLY_RESULT,
    Outcome,
    decode_object,
    decode_reply,
    encode_body,
    settle,
)
from hwfleet.bus.rpc import RpcDispatcher
from hwfleet.types import JsonObject


def test_bodies() -> None:
    assert encode_body(b"raw") == b"raw"
    assert msgspec.json.decode(encode_body({"sn": 1001})) == {"sn": 1001}
    with pytest.raises(TypeError, match="bytes or a dict, not list"):
        encode_body([1])  # type: ignore[arg-type]
    assert decode_object(b'{"a": 1}') == {"a": 1}
    with pytest.raises(RejectedMessageError, match="body is not JSON"):
        decode_object(b"{")
    with pytest.raises(RejectedMessageError, match="must be a JSON object, got a string"):
        decode_object(b'"x"')


def test_settle_rules() -> None:
    assert settle(None, False) == (Outcome.ACK, "")
    assert settle(RejectedMessageError("bad sn"), False) == (Outcome.DEAD_LETTER, "bad sn")
    outcome, reason = settle(msgspec.ValidationError("Expected `int`"), False)
    assert outcome is Outcome.DEAD_LETTER and "Expected `int`" in reason
    assert settle(RuntimeError("db down"), False)[0] is Outcome.REQUEUE
    outcome, reason = settle(RuntimeError("db down"), True)
    assert (
        outcome is Outcome.DEAD_LETTER and reason == "handler failed twice: RuntimeError: db down"
    )


def test_reply_decoding() -> None:
    assert decode_reply("configuration", "get", REPLY_RESULT, b'{"v": 1}') == {"v": 1}
    with pytest.raises(RpcError) as err:
        decode_reply("configuration", "get", REPLY_ERROR, b'{"error": {"msg": "m", "code": "c"}}')
    assert (err.value.msg, err.value.code, str(err.value)) == ("m", "c", "configuration get: m")
    with pytest.raises(RpcError, match="reply is not JSON"):
        decode_reply("x", "y", REPLY_RESULT, b"<")
    with pytest.raises(RpcError, match="reply is an array"):
        decode_reply("x", "y", REPLY_RESULT, b"[]")


async def test_dispatcher_answers_everything() -> None:
    async def get(params: JsonObject) -> JsonObject:
        return {"key": params["key"]}

    async def profile(params: JsonObject) -> JsonObject:
        return {"profile": True}

    async def broken(params: JsonObject) -> JsonObject:
        return [1]  # type: ignore[return-value]

    d = RpcDispatcher("task", {"get": get, "requestProfile.*": profile, "broken": broken})
    assert d.binding_keys() == ["methods.get", "methods.broken", "methods.requestProfile.*"]
    assert await d.answer("methods.get", b'{"key": "k"}') == (REPLY_RESULT, b'{"key":"k"}')
    assert await d.answer("methods.requestProfile.n1", b"{}") == (REPLY_RESULT, b'{"profile":true}')
    kind, body = await d.answer("methods.nope", b"{}")
    assert kind == REPLY_ERROR and msgspec.json.decode(body)["error"]["code"] == "unknown_method"
    kind, body = await d.answer("methods.get", b"{}")  # KeyError inside the handler
    assert kind == REPLY_ERROR and msgspec.json.decode(body)["error"]["code"] == "failed"
    kind, body = await d.answer("methods.broken", b"{}")
    assert msgspec.json.decode(body)["error"]["code"] == "failed"
    kind, body = await d.answer("other.key", b"{}")
    assert msgspec.json.decode(body)["error"]["code"] == "unknown_method"
    with pytest.raises(ValueError, match="at least one handler"):
        RpcDispatcher("task", {})
