"""Store errors, and turning a failed connection into a message an operator can act on."""

from __future__ import annotations

import socket
from collections.abc import Iterator

from sqlalchemy.engine import URL

from hwfleet.errors import StoreError

HINT = "set --db or HWFLEET_DB"


class StoreUnavailableError(StoreError):
    """The database cannot be reached or opened (raised by ``open_store``)."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what caused it, and the driver error SQLAlchemy wrapped (``.orig``)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        for nxt in (getattr(item, "orig", None), item.__cause__, item.__context__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def _find(exc: BaseException, *names: str) -> BaseException | None:
    for item in _chain(exc):
        if any(cls.__name__ in names for cls in type(item).__mro__):
            return item
    return None


def explain_connect_error(url: URL, exc: BaseException) -> str:
    """One line: which database, what went wrong, and how to point hwfleet elsewhere."""
    if url.get_backend_name() == "sqlite":
        path = url.database or ":memory:"
        return f"SQLite database {path} could not be opened: {_root(exc)} — {HINT}"
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    if _find(exc, "ConnectionRefusedError"):
        return f"PostgreSQL at {where} refused the connection — is it running? {HINT}"
    if (err := _find(exc, "gaierror")) is not None and isinstance(err, socket.gaierror):
        return f"PostgreSQL host {url.host!r} could not be resolved ({err.strerror}) — {HINT}"
    if _find(exc, "TimeoutError", "CancelledError"):
        return f"PostgreSQL at {where} did not answer in time — is it reachable? {HINT}"
    if _find(exc, "InvalidCatalogNameError"):
        return (
            f"PostgreSQL at {where} has no database {url.database!r} — "
            f"create it (createdb {url.database}) or {HINT}"
        )
    if (
        err := _find(exc, "InvalidPasswordError", "InvalidAuthorizationSpecificationError")
    ) is not None:
        return f"PostgreSQL at {where} refused user {url.username!r}: {err} — {HINT}"
    return f"PostgreSQL at {where} could not be opened: {_root(exc)} — {HINT}"


#: Exception class names (anywhere in the chain) meaning "the database cannot do it now": no
#: connection, a dropped one, a full disk, a server shutting down. Retrying later can cure
#: these; an integrity or programming error it cannot, so those are not listed.
_UNAVAILABLE = (
    "OSError",  # ConnectionRefusedError, ConnectionResetError, ENOSPC from the driver
    "TimeoutError",
    "OperationalError",  # SQLite: disk full, I/O error, locked too long; PG: connection lost
    "InterfaceError",
    "DisconnectionError",
    "PostgresConnectionError",
    "CannotConnectNowError",
    "InsufficientResourcesError",  # PostgreSQL 53xxx: disk full, out of memory
    "OperatorInterventionError",  # PostgreSQL 57xxx: admin shutdown, crash recovery
)


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` says the database is unreachable or cannot write *now*.

    Such an error says nothing about the data being written: the caller should
    wait and try again rather than treat the input as bad.
    """
    if getattr(exc, "connection_invalidated", False):
        return True
    return _find(exc, *_UNAVAILABLE) is not None


def describe_unavailable(exc: BaseException) -> str:
    """A short phrase for an operator: the driver's words, one line, bounded."""
    if _find(exc, "ConnectionRefusedError"):
        return "connection refused"
    if _find(exc, "ConnectionResetError", "ConnectionDoesNotExistError"):
        return "connection lost"
    text = _root(exc)
    return text if len(text) <= 120 else text[:119] + "…"


def _root(exc: BaseException) -> str:
    """The innermost message: the driver's words, not SQLAlchemy's wrapper with its URL."""
    last = exc
    for item in _chain(exc):
        last = item
    text = str(last).strip() or type(last).__name__
    return text.splitlines()[0]
