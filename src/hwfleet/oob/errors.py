"""Turning a driver library's exception into a :class:`BmcError` without leaking secrets.

Library messages can hold anything the BMC answered or the URL requested; the
username and password are cut out of every message before it is stored, logged or
returned, and the message is capped so a BMC answering garbage cannot flood a row.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

from hwfleet.oob.driver import BmcError, ErrorKind

if TYPE_CHECKING:
    from hwfleet.oob.driver import BmcAddress

MAX_MESSAGE = 300


def scrub(text: str, address: BmcAddress) -> str:
    """``text`` with the credentials replaced by ``***``, at most :data:`MAX_MESSAGE` chars."""
    for secret in address.secrets():
        if secret and len(secret) >= 2:
            text = text.replace(secret, "***")
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "…"


def classify(exc: BaseException) -> ErrorKind:
    """Which kind of failure a library exception is, by its type and status code."""
    name = type(exc).__name__
    code = getattr(exc, "status_code", None)
    text = str(exc).lower()
    if code in (401, 403) or name in ("AccessError", "MissingXAuthToken"):
        return "auth"
    if "unauthorized" in text or "incorrect password" in text or "authorization" in text:
        return "auth"
    if name == "IpmiException" and text in ("", "none"):
        return "timeout"  # pyghmi's bare exception: the session got no answer
    if isinstance(exc, ValueError):  # requests' JSONDecodeError is also an OSError
        return "protocol"
    if isinstance(exc, TimeoutError | socket.timeout) or "timed out" in text or "timeout" in text:
        return "timeout"
    if name == "ConnectionError" or isinstance(exc, ConnectionError | OSError):
        return "unreachable"
    if "refused" in text or "unreachable" in text or "no route" in text:
        return "unreachable"
    return "protocol"


@contextlib.contextmanager
def translate(address: BmcAddress) -> Iterator[None]:
    """Re-raise any library failure inside the block as a scrubbed :class:`BmcError`."""
    try:
        yield
    except BmcError as exc:
        raise BmcError(exc.kind, scrub(exc.message, address)) from None
    except Exception as exc:  # library errors have no common base worth trusting
        kind = classify(exc)
        detail = scrub(f"{type(exc).__name__}: {exc}", address)
        raise BmcError(kind, f"{address.driver} BMC {address.address}: {detail}") from None
