"""The controller↔agent wire protocol (seed 001): envelope, framing, sessions, methods."""

from hwfleet.protocol.envelope import (
    PROTOCOL_VERSION,
    BadEnvelope,
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
    CallTimeout,
    ErrorCode,
    MethodError,
    ProtocolError,
    RemoteError,
    SessionClosed,
)
from hwfleet.protocol.framing import MAX_LINE, STREAM_LIMIT, LineTooLong, read_line
from hwfleet.protocol.methods import MethodRegistry, canonical
from hwfleet.protocol.session import Session
from hwfleet.protocol.status import StatusId

__all__ = [
    "MAX_LINE",
    "PROTOCOL_VERSION",
    "STREAM_LIMIT",
    "BadEnvelope",
    "CallTimeout",
    "Command",
    "Error",
    "ErrorBody",
    "ErrorCode",
    "FatalError",
    "LineTooLong",
    "Message",
    "MethodError",
    "MethodRegistry",
    "ProtocolError",
    "RemoteError",
    "Result",
    "Session",
    "SessionClosed",
    "StatusId",
    "canonical",
    "decode",
    "encode",
    "read_line",
]
