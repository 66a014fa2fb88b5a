"""URL normalisation, error messages, and the column types that hide engine differences."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from hwfleet.store import StoreUnavailableError, open_store
from hwfleet.store.errors import describe_unavailable, explain_connect_error, is_unavailable
from hwfleet.store.sqltypes import UTCDateTime
from hwfleet.store.urls import is_memory, normalize_url


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgresql://postgres@127.0.0.1:5432/hwfleet", "postgresql+asyncpg"),
        ("postgres://postgres@db/hwfleet", "postgresql+asyncpg"),
        ("postgresql+asyncpg://u:p@h/d", "postgresql+asyncpg"),
        ("sqlite:///tmp/x.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///tmp/x.db", "sqlite+aiosqlite"),
        ("/var/lib/hwfleet/hwfleet.db", "sqlite+aiosqlite"),
    ],
)
def test_urls_are_normalised_to_the_async_drivers(given: str, driver: str) -> None:
    assert normalize_url(given).drivername == driver


def test_bare_path_and_memory() -> None:
    assert normalize_url("data/h.db").database == "data/h.db"
    assert normalize_url("~/h.db").database == str(Path("~/h.db").expanduser())
    assert is_memory(normalize_url("sqlite:///:memory:"))
    assert not is_memory(normalize_url("sqlite:///x.db"))


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("", "no database URL given"),
        ("   ", "no database URL given"),
        ("mysql://root@127.0.0.1/db", "scheme 'mysql' is not supported"),
        ("postgresql+psycopg2://x@y/z", "is not supported"),
        ("://nothing", "is not a URL"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(given: str, message: str) -> None:
    with pytest.raises(StoreUnavailableError, match=message) as caught:
        normalize_url(given)
    assert "set --db or HWFLEET_DB" in str(caught.value)


async def test_a_closed_port_gives_an_actionable_message() -> None:
    # A bound socket that never listens: connecting to it is refused, and no one
    # else can take the port while the test runs.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        with pytest.raises(StoreUnavailableError) as caught:
            await open_store(f"postgresql://postgres:secret@127.0.0.1:{port}/hwfleet")
    assert str(caught.value) == (
        f"PostgreSQL at 127.0.0.1:{port} refused the connection — is it running? "
        "set --db or HWFLEET_DB"
    )
    assert "secret" not in str(caught.value)


async def test_an_unusable_sqlite_location_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailableError, match="cannot create the directory"):
        await open_store(str(blocker / "sub" / "h.db"))
    with pytest.raises(StoreUnavailableError, match=r"SQLite database .* could not be opened"):
        await open_store(str(tmp_path))  # a directory is not a database file


class InvalidCatalogNameError(Exception):
    """Named like asyncpg's: the explanation goes by class name, asyncpg being optional."""


def test_connect_errors_are_explained_by_cause() -> None:
    url = normalize_url("postgresql://u@db.example:6543/fleet")

    wrapped = RuntimeError("wrapper")
    wrapped.__cause__ = ConnectionRefusedError(111, "Connection refused")
    assert "db.example:6543 refused the connection" in explain_connect_error(url, wrapped)
    assert "did not answer in time" in explain_connect_error(url, TimeoutError())
    missing = explain_connect_error(url, InvalidCatalogNameError('database "fleet" does not exist'))
    assert "has no database 'fleet'" in missing and "createdb fleet" in missing
    gai = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert "host 'db.example' could not be resolved" in explain_connect_error(url, gai)
    assert "could not be opened: odd" in explain_connect_error(url, ValueError("odd\nmore"))


def test_utc_datetime_binds_aware_values_and_refuses_naive_ones() -> None:
    kind = UTCDateTime()
    lite, pg = sqlite.dialect(), postgresql.dialect()  # type: ignore[no-untyped-call]
    local = datetime(2025, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert kind.process_bind_param(local, lite) == datetime(2025, 1, 1, 10, 0)
    assert kind.process_bind_param(local, pg) == datetime(2025, 1, 1, 10, 0, tzinfo=UTC)
    assert kind.process_bind_param(None, lite) is None
    with pytest.raises(ValueError, match="naive datetime"):
        kind.process_bind_param(datetime(2025, 1, 1), lite)
    with pytest.raises(TypeError, match="expected a datetime"):
        kind.process_bind_param("2025-01-01", lite)  # type: ignore[arg-type]
    back = kind.process_result_value(datetime(2025, 1, 1, 10, 0), lite)
    assert back == datetime(2025, 1, 1, 10, 0, tzinfo=UTC) and back.tzinfo is UTC


def test_unavailable_means_the_store_could_not_do_it_now_not_bad_data() -> None:
    import sqlite3

    from sqlalchemy import exc as sa_exc

    full = sa_exc.OperationalError(
        "INSERT", {}, sqlite3.OperationalError("database or disk is full")
    )
    assert is_unavailable(full) and describe_unavailable(full) == "database or disk is full"
    refused = ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")
    assert is_unavailable(refused) and describe_unavailable(refused) == "connection refused"
    assert is_unavailable(TimeoutError())
    duplicate = sa_exc.IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE failed"))
    assert not is_unavailable(duplicate)
    assert not is_unavailable(ValueError("bad serial"))
