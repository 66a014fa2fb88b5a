"""Error codes carried in ``error.code`` replies, and the exceptions that raise them."""

from __future__ import annotations

from enum import StrEnum

from hwfleet.errors import ProtocolError


class ErrorCode(StrEnum):
    """Machine-readable reasons; ``error.msg`` carries the human-readable one."""

    UNKNOWN_METHOD = "unknown_method"
    BAD_PARAMS = "bad_params"
    BAD_REQUEST = "bad_request"
    UNSUPPORTED_VERSION = "unsupported_version"
    BUSY = "busy"
    FAILED = "failed"
    UNAUTHORIZED = "unauthorized"
    REFUSED = "refused"
    NOT_FOUND = "not_found"
    TIMEOUT = "timeout"


class FatalProtocolError(ProtocolError):
    """A peer broke the wire format badly enough that the connection must close.

    The message becomes the ``fatal_error`` line sent before closing.
    """


class MethodError(ProtocolError):
    """Raised by a method handler to answer with an error reply instead of a result."""

    def __init__(self, msg: str, code: ErrorCode | str = ErrorCode.FAILED) -> None:
        super().__init__(msg)
        self.msg = msg
        self.code = str(code)


class RemoteError(ProtocolError):
    """The peer answered a call with an error reply."""

    def __init__(self, method: str, msg: str, code: str) -> None:
        super().__init__(f"{method}: {msg} ({code})")
        self.method = method
        self.msg = msg
        self.code = code


class CallTimeoutError(ProtocolError, TimeoutError):
    """A call got no reply before its deadline."""

    def __init__(self, method: str, timeout: float, peer: str) -> None:
        super().__init__(f"{method} to {peer} got no reply within {timeout:g} s")
        self.method = method


class SessionClosedError(ProtocolError, ConnectionError):
    """The session closed before (or while) a call could complete."""
