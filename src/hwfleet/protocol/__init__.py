"""The controller↔agent wire protocol (seed 001): envelope, framing, sessions, methods."""

from hwfleet.protocol.envelope import (
    PROTOCOL_VERSION,
    BadEnvelopeError,
    Command,
    Error,
    ErrorBody,
    FatalError,
    Message,
    Result,
    decode,
    encode,
)
from hwfleet.protocol.errors import (
    CallTimeoutError,
    ErrorCode,
    FatalProtocolError,
    MethodError,
    RemoteError,
    SessionClosedError,
)
from hwfleet.protocol.framing import MAX_LINE, STREAM_LIMIT, LineTooLongError, read_line
from hwfleet.protocol.methods import MethodRegistry, canonical
from hwfleet.protocol.session import Session
from hwfleet.protocol.status import StatusId

__all__ = [
    "MAX_LINE",
    "PROTOCOL_VERSION",
    "STREAM_LIMIT",
    "BadEnvelopeError",
    "CallTimeoutError",
    "Command",
    "Error",
    "ErrorBody",
    "ErrorCode",
    "FatalError",
    "FatalProtocolError",
    "LineTooLongError",
    "Message",
    "MethodError",
    "MethodRegistry",
    "RemoteError",
    "Result",
    "Session",
    "SessionClosedError",
    "StatusId",
    "canonical",
    "decode",
    "encode",
    "read_line",
]
