"""What both backends agree on about bodies, settling messages and RPC replies.

Keeping these rules in one module is what makes ``memory://`` and ``amqp://``
behave the same: the backends move bytes, this module decides what the bytes
mean and what happens to a message whose handler failed.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from typing import Any

import msgspec

from hwfleet.bus.base import RejectedMessageError, RpcError
from hwfleet.bus.topology import ORIGIN_HEADER, REASON_HEADER
from hwfleet.types import JsonObject

log = logging.getLogger(__name__)

#: AMQP ``type`` property of an RPC reply: the body is the result object.
REPLY_RESULT = "result"
#: AMQP ``type`` property of an RPC error reply: the body is ``{"error": {"msg", "code"}}``.
REPLY_ERROR = "error"
#: Seconds a cancelled consumer waits for its running handlers before cancelling them.
STOP_GRACE = 10.0
#: RabbitMQ's direct reply-to pseudo-queue.
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def encode_body(body: bytes | bytearray | memoryview | JsonObject) -> bytes:
    """Bytes pass through; a dict is encoded as JSON."""
    if isinstance(body, bytes):
        return body
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    if isinstance(body, dict):
        return _encoder.encode(body)
    raise TypeError(f"a bus body is bytes or a dict, not {type(body).__name__}")


def decode_object(body: bytes, what: str = "body") -> JsonObject:
    """Decode a JSON object; anything else raises :class:`RejectedMessageError` naming the fault."""
    try:
        value = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise RejectedMessageError(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise RejectedMessageError(f"{what} must be a JSON object, got {_json_kind(value)}")
    return value


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else type(value).__name__


class Outcome(enum.Enum):
    ACK = "ack"
    REQUEUE = "requeue"
    DEAD_LETTER = "dead-letter"


def settle(exc: BaseException | None, redelivered: bool) -> tuple[Outcome, str]:
    """What to do with a message after its handler returned or raised ``exc``.

    A bad message (``RejectedMessageError``, or a body msgspec could not decode or validate)
    goes straight to the dead-letter exchange: a retry would fail the same way.
    Any other failure is requeued once, then dead-lettered, so a poison message
    can never loop.
    """
    if exc is None:
        return Outcome.ACK, ""
    if isinstance(exc, RejectedMessageError):
        return Outcome.DEAD_LETTER, str(exc) or "rejected by the consumer"
    if isinstance(exc, msgspec.DecodeError | msgspec.ValidationError | UnicodeDecodeError):
        return Outcome.DEAD_LETTER, f"bad body: {exc}"
    if redelivered:
        return Outcome.DEAD_LETTER, f"handler failed twice: {type(exc).__name__}: {exc}"
    return Outcome.REQUEUE, f"{type(exc).__name__}: {exc}"


def dead_letter_headers(headers: Mapping[str, Any], reason: str, origin: str) -> dict[str, Any]:
    """The original headers plus why and where from."""
    out = dict(headers)
    out[REASON_HEADER] = reason[:1000]
    out[ORIGIN_HEADER] = origin
    return out


def encode_error(msg: str, code: str) -> bytes:
    return _encoder.encode({"error": {"msg": msg, "code": code}})


def decode_reply(exchange: str, method: str, reply_type: str | None, body: bytes) -> JsonObject:
    """The result of an RPC reply, or :class:`RpcError` for an error reply or garbage."""
    try:
        value = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise RpcError(exchange, method, f"reply is not JSON: {exc}", "bad_reply") from None
    if not isinstance(value, dict):
        raise RpcError(
            exchange, method, f"reply is {_json_kind(value)}, not an object", "bad_reply"
        )
    if reply_type == REPLY_ERROR:
        err = value.get("error")
        if isinstance(err, dict):
            return_msg = str(err.get("msg", "the server reported an error"))
            raise RpcError(exchange, method, return_msg, str(err.get("code", "failed")))
        raise RpcError(exchange, method, f"malformed error reply: {value!r}", "bad_reply")
    return value
