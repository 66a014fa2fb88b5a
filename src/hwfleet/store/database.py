"""The Store: one engine, transactions that hand out repositories, and ``open_store``.

SQLite (the embedded default) is tuned for a single controller process: WAL so
readers never wait for the writer, foreign keys on, a busy timeout, and write
transactions that begin IMMEDIATE and queue on an in-process lock so two
coroutines never fight over the one write slot (a deferred SQLite transaction
that reads and then writes can fail with SQLITE_BUSY instead of waiting).
PostgreSQL (the scale-out path) relies on row locks, SKIP LOCKED and
conditional updates in the repositories instead.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from hwfleet.store import migrate
from hwfleet.store.errors import StoreUnavailableError, explain_connect_error
from hwfleet.store.sqltypes import json_dumps, json_loads
from hwfleet.store.tx import Tx
from hwfleet.store.urls import is_memory, normalize_url

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Seconds a SQLite connection waits for another process's write lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 10_000
#: Seconds to wait for PostgreSQL to accept a connection.
PG_CONNECT_TIMEOUT = 10.0
_BEGIN_OPTION = "hwfleet_sqlite_begin"


class Store:
    """The database: open with :func:`open_store`, work inside :meth:`tx`, then :meth:`close`."""

    def __init__(self, engine: AsyncEngine, url: URL) -> None:
        self.engine = engine
        self._url = url
        self._memory = is_memory(url)
        # SQLite has one write slot per database: queue writers here rather than in busy loops.
        self._write_lock = asyncio.Lock() if self.backend == "sqlite" else None
        self._unfinished: set[asyncio.Task[Any]] = set()

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._url.get_backend_name()

    @property
    def url(self) -> str:
        """The database URL with any password masked (safe to log)."""
        return self._url.render_as_string(hide_password=True)

    @asynccontextmanager
    async def tx(self, *, readonly: bool = False) -> AsyncIterator[Tx]:
        """One transaction: commits when the block exits, rolls back if it raises.

        ``readonly=True`` is a promise not to write; on SQLite it lets the
        transaction run beside a writer instead of queueing behind it.
        """
        guard: AbstractAsyncContextManager[Any] = nullcontext()
        if self._write_lock is not None and (not readonly or self._memory):
            # An in-memory database is one shared connection: everything must queue.
            guard = self._write_lock
        async with guard, self.engine.connect() as conn:
            if self.backend == "sqlite":
                await conn.execution_options(
                    **{_BEGIN_OPTION: "DEFERRED" if readonly else "IMMEDIATE"}
                )
            async with conn.begin():
                yield Tx(conn)

    async def write(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        """One write transaction, ``await work(tx)``, that cancelling the caller does not cut short.

        ``work`` runs in a task of its own; a caller cancelled meanwhile (a shutdown
        cancelling a connection handler or a periodic flush) gets CancelledError at once
        and the transaction finishes behind it. Cut short mid-statement instead, SQLAlchemy
        invalidates the connection and the SQLite connection stays open inside its
        transaction, holding the database's one write lock: every later writer then
        fails with "database is locked" after the busy timeout. :meth:`close` waits for
        these transactions.
        """
        task: asyncio.Task[T] = asyncio.ensure_future(self._write(work))
        self._unfinished.add(task)
        task.add_done_callback(self._finished)
        return await asyncio.shield(task)

    async def _write(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        async with self.tx() as tx:
            return await work(tx)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._unfinished.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            # Its caller may have been cancelled and never see this: say it once here.
            log.warning("a write transaction failed: %s", error)

    async def close(self) -> None:
        if self._unfinished:
            await asyncio.gather(*self._unfinished, return_exceptions=True)
        await self.engine.dispose()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"


def _sqlite_engine(url: URL) -> AsyncEngine:
    memory = is_memory(url)
    kwargs: dict[str, Any] = {}
    if memory:
        kwargs["poolclass"] = StaticPool
    engine = create_async_engine(
        url, json_serializer=json_dumps, json_deserializer=json_loads, **kwargs
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Hand transaction control to us (the "begin" hook below), not to the sqlite3 module.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            if not memory:
                _use_wal(cursor)
                # NORMAL is crash-safe in WAL mode; only an OS crash can lose the last commits.
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL, waiting out another connection doing the same.

    Two processes (or replicas) opening one fresh file both switch it; SQLite answers
    the second "database is locked" at once, without its busy handler, while the
    first holds the lock for the switch. WAL is then the file's mode for good.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)  # a connect hook runs on the driver's thread, not the loop


def _postgres_engine(url: URL) -> AsyncEngine:
    return create_async_engine(
        url,
        json_serializer=json_dumps,
        json_deserializer=json_loads,
        pool_pre_ping=True,
        connect_args={"timeout": PG_CONNECT_TIMEOUT},
    )


async def open_store(url: str, *, run_migrations: bool = True) -> Store:
    """Open the database at ``url`` and migrate it to the newest schema.

    Accepts ``sqlite:///PATH`` (the file's directory is created), ``postgresql://…``
    or a bare file path. Raises :class:`StoreUnavailableError` with a one-line reason
    when the database cannot be reached or opened.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite" and not is_memory(parsed):
        directory = Path(parsed.database or "").parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailableError(
                f"cannot create the directory {directory} for the SQLite database: "
                f"{exc.strerror} — set --db or HWFLEET_DB"
            ) from None
        # Try the file here first: a failed aiosqlite connect leaves its worker thread to
        # report to the event loop later, which may be closed by then (aiosqlite 0.22 does
        # not await its own stop() on that path).
        try:
            sqlite3.connect(parsed.database or "").close()
        except sqlite3.Error as exc:
            raise StoreUnavailableError(explain_connect_error(parsed, exc)) from exc
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(parsed)
    else:
        engine = _postgres_engine(parsed)
    store = Store(engine, parsed)
    try:
        try:
            async with engine.connect():
                pass
        except Exception as exc:
            raise StoreUnavailableError(explain_connect_error(parsed, exc)) from exc
        if run_migrations:
            await migrate.upgrade(engine)
    except BaseException:
        await engine.dispose()
        raise
    return store
