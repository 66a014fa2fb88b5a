"""Shared fixtures: the real services tests talk to, and how a missing one is reported.

``HWFLEET_TEST_AMQP`` / ``HWFLEET_TEST_DB`` name the servers (defaults: this
machine's RabbitMQ and PostgreSQL). Outside CI an unreachable server skips
the test with the reason; with ``CI`` set it fails instead, so CI can never
pass by skipping the tests that matter.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import urlsplit

import pytest

from tests.postgres import DB_URL, create_database, drop_database
from tests.rabbit import temporary_vhost

if TYPE_CHECKING:
    from hwfleet.store import Store

AMQP_URL = os.environ.get("HWFLEET_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")


def service_missing(what: str) -> NoReturn:
    """Skip (or fail, in CI) because a required service or tool is missing.

    CI runs on a machine that has them all (RabbitMQ, PostgreSQL, rabbitmqctl, root for
    loop devices and network namespaces): there a skip would hide an unproven feature.
    """
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI is set, so this fails instead of skipping)")
    pytest.skip(what)


def _reachable(url: str, default_port: int) -> bool:
    import socket

    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def amqp_vhost_url() -> Iterator[str]:
    """A fresh RabbitMQ vhost for this test session, so tests never see another run's queues."""
    if not _reachable(AMQP_URL, 5672):
        service_missing(f"RabbitMQ is not reachable at {AMQP_URL}")
    with temporary_vhost(AMQP_URL, "hwfleet-test") as url:
        yield url or AMQP_URL  # no rabbitmqctl (a remote broker): share its default vhost


@pytest.fixture
def amqp_url(amqp_vhost_url: str) -> str:
    return amqp_vhost_url


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """An empty, migrated SQLite store in the test's directory (a module or folder that
    needs another database defines its own ``store``)."""
    from hwfleet.store import open_store

    opened = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'hwfleet.db'}")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database (SQLAlchemy asyncpg URL), dropped afterwards."""
    if not _reachable(DB_URL, 5432):
        service_missing(f"PostgreSQL is not reachable at {DB_URL}")
    url = await create_database("hwfleet_test")
    try:
        yield url
    finally:
        await drop_database(url)


@pytest.fixture
def deadline() -> float:
    """Seconds a test may wait for an event before it fails (never a sleep)."""
    return float(os.environ.get("HWFLEET_TEST_DEADLINE", "10"))


async def wait_for(predicate: object, timeout: float = 10.0, interval: float = 0.01) -> None:
    """Poll ``predicate()`` until true or fail after ``timeout``.

    Only for state owned by another process, where no event can be awaited.
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        value = predicate()  # type: ignore[operator]
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if loop.time() > end:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        await asyncio.sleep(interval)
