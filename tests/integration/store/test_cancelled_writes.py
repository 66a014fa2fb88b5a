"""A write transaction whose caller is cancelled mid-statement must not keep SQLite's write lock.

Seen as `hwfleet demo --once` ending with "database is locked" and a traceback:
stopping the controller cancels connection handlers while they mark their device
offline; SQLAlchemy then invalidates the connection, the SQLite connection stays
open inside its write transaction, and the next writer gives up after the busy
timeout. ``Store.write`` lets the transaction finish behind the cancelled caller.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

import hwfleet.store.database
from hwfleet.store import Tx, open_store

#: About a second of work on the driver's thread; started() tells the test it is running.
SLOW = sa.text(
    "WITH RECURSIVE c(x) AS (SELECT started() UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) "
    "SELECT count(*) FROM c"
)


async def test_a_cancelled_write_leaves_the_database_writable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Long enough to wait out the slow statement, short enough that a held lock fails fast.
    monkeypatch.setattr(hwfleet.store.database, "SQLITE_BUSY_TIMEOUT_MS", 5000)
    store = await open_store(str(tmp_path / "hwfleet.db"))
    running = threading.Event()  # set on the driver's thread, inside the statement

    def started() -> int:
        running.set()
        return 1

    async def slow_write(tx: Tx) -> None:
        raw = await tx.conn.get_raw_connection()
        await raw.driver_connection.create_function("started", 0, started)
        await tx.conn.execute(SLOW)
        await tx.conn.execute(sa.text("UPDATE devices SET name = name"))

    gc.disable()
    try:
        caller = asyncio.create_task(store.write(slow_write))
        assert await asyncio.to_thread(running.wait, 30)  # the statement is running now
        caller.cancel()
        # Kept, as the controller's gather(..., return_exceptions=True) keeps them: the
        # exception's frames hold the abandoned cursor, so garbage collection cannot rescue
        # a lock left behind (nor can the cyclic collector, off for the test).
        outcome = await asyncio.gather(caller, return_exceptions=True)
        assert isinstance(outcome[0], asyncio.CancelledError)
        # The next writer waits for the write lock and gets it; before the fix the lock
        # stayed with the abandoned connection and this failed with "database is locked".
        async with asyncio.timeout(30):
            await store.write(lambda tx: tx.devices.mark_all_offline())
    finally:
        gc.enable()
        await store.close()
