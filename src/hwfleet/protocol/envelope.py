"""The seed-001 envelope: one UTF-8 JSON object per line (DESIGN §3).

Decoding sorts a line into a :class:`Command`, :class:`Result`, :class:`Error`
or :class:`FatalError`. A line that is not a usable envelope raises
:class:`~hwfleet.protocol.errors.FatalProtocolError` when there is no ``id`` to
answer (the caller then sends ``fatal_error`` and closes), or
:class:`BadEnvelopeError` when there is one (the caller answers with an error reply).
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from hwfleet.errors import ProtocolError
from hwfleet.protocol.errors import ErrorCode, FatalProtocolError

PROTOCOL_VERSION = "1"


class ErrorBody(msgspec.Struct, forbid_unknown_fields=False):
    """``error``: ``msg`` is human-readable; ``code`` is one of :class:`ErrorCode`."""

    msg: str
    code: str = ErrorCode.FAILED.value


class Command(msgspec.Struct):
    """A request: ``method`` with ``params``; the peer answers with the same ``id``."""

    version: str
    id: str
    method: str
    params: dict[str, Any] = msgspec.field(default_factory=dict)


class Result(msgspec.Struct):
    """A success reply."""

    version: str
    id: str
    result: dict[str, Any]


class Error(msgspec.Struct):
    """An error reply."""

    version: str
    id: str
    error: ErrorBody


class FatalError(msgspec.Struct):
    """The last line before the sender closes the connection."""

    fatal_error: str


Message = Command | Result | Error | FatalError


class BadEnvelopeError(ProtocolError):
    """An envelope with a usable ``id`` but otherwise wrong: answer with an error reply."""

    def __init__(self, message_id: str, msg: str, code: ErrorCode = ErrorCode.BAD_REQUEST) -> None:
        super().__init__(msg)
        self.message_id = message_id
        self.msg = msg
        self.code = code


class _Raw(msgspec.Struct):
    """Every field optional, so that a wrong line can be described precisely."""

    version: Any = msgspec.UNSET
    id: Any = msgspec.UNSET
    method: Any = msgspec.UNSET
    params: Any = msgspec.UNSET
    result: Any = msgspec.UNSET
    error: Any = msgspec.UNSET
    fatal_error: Any = msgspec.UNSET


_decoder = msgspec.json.Decoder(_Raw)
_encoder = msgspec.json.Encoder()


def new_id() -> str:
    """A fresh message id (uuid4, as DESIGN §3 asks)."""
    return str(uuid.uuid4())


def decode(line: bytes) -> Message:
    """Decode one line (without or with its trailing newline)."""
    try:
        raw = _decoder.decode(line)
    except msgspec.ValidationError as exc:
        raise FatalProtocolError(f"not a JSON object: {exc}") from None
    except msgspec.DecodeError as exc:
        raise FatalProtocolError(f"invalid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise FatalProtocolError(f"invalid UTF-8 at byte {exc.start}") from None
    if raw.fatal_error is not msgspec.UNSET:
        return FatalError(fatal_error=str(raw.fatal_error))
    if not isinstance(raw.id, str) or not raw.id:
        raise FatalProtocolError("envelope has no string 'id'")
    if not isinstance(raw.version, str):
        raise FatalProtocolError("envelope has no string 'version'")
    if raw.version != PROTOCOL_VERSION:
        raise BadEnvelopeError(
            raw.id,
            f"protocol version {raw.version!r} is not supported (this peer speaks "
            f"{PROTOCOL_VERSION!r})",
            ErrorCode.UNSUPPORTED_VERSION,
        )
    if raw.method is not msgspec.UNSET:
        if not isinstance(raw.method, str) or not raw.method:
            raise BadEnvelopeError(raw.id, "'method' must be a non-empty string")
        params = {} if raw.params is msgspec.UNSET or raw.params is None else raw.params
        if not isinstance(params, dict):
            raise BadEnvelopeError(
                raw.id,
                f"'params' must be an object, not {type(params).__name__}",
                ErrorCode.BAD_PARAMS,
            )
        return Command(version=raw.version, id=raw.id, method=raw.method, params=params)
    if raw.result is not msgspec.UNSET:
        if not isinstance(raw.result, dict):
            raise BadEnvelopeError(raw.id, "'result' must be an object")
        return Result(version=raw.version, id=raw.id, result=raw.result)
    if raw.error is not msgspec.UNSET:
        if not isinstance(raw.error, dict) or not isinstance(raw.error.get("msg"), str):
            raise BadEnvelopeError(raw.id, "'error' must be an object with a string 'msg'")
        code = raw.error.get("code", ErrorCode.FAILED.value)
        return Error(
            version=raw.version, id=raw.id, error=ErrorBody(msg=raw.error["msg"], code=str(code))
        )
    raise BadEnvelopeError(raw.id, "envelope has none of 'method', 'result' or 'error'")


def encode(message: Message) -> bytes:
    """Encode one message as a line, newline included."""
    return _encoder.encode(message) + b"\n"


def command(method: str, params: dict[str, Any] | None = None, *, id: str | None = None) -> Command:
    """Build a command with a fresh id."""
    return Command(version=PROTOCOL_VERSION, id=id or new_id(), method=method, params=params or {})


def result(message_id: str, value: dict[str, Any]) -> Result:
    """Build a success reply to ``message_id``."""
    return Result(version=PROTOCOL_VERSION, id=message_id, result=value)


def error(message_id: str, msg: str, code: ErrorCode | str = ErrorCode.FAILED) -> Error:
    """Build an error reply to ``message_id``."""
    return Error(version=PROTOCOL_VERSION, id=message_id, error=ErrorBody(msg=msg, code=str(code)))
