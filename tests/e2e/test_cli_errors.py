"""Start-up and client mistakes, made through the real CLI: one line naming the fix, no traceback.

Each case runs ``hwfleet`` as a subprocess the way an operator would and checks
stderr: a single ``hwfleet: …`` line that names the setting, where its value
came from and how to set it, and a non-zero exit code.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import DB_URL, _reachable, service_missing
from tests.e2e.conftest import HWFLEET, Server, wait_until


def hwfleet(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HWFLEET_")}
    return subprocess.run(
        [*HWFLEET, *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The error line; fails unless the command failed with exactly that on stderr."""
    assert done.returncode != 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hwfleet: "), done.stderr
    return lines[0]


def server_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """Free ports and a data dir of the test's own, by environment so a case can override
    one (a flag would win over the variable under test)."""
    return {
        "HWFLEET_DATA_DIR": str(tmp_path / "ctl"),
        "HWFLEET_AGENT_LISTEN": "127.0.0.1:0",
        "HWFLEET_API_LISTEN": "127.0.0.1:0",
        **overrides,
    }


START_UP_MISTAKES = [
    ("HWFLEET_DB", "garbage://x", "database URL scheme 'garbage' is not supported"),
    ("HWFLEET_DB", "postgresql://postgres@127.0.0.1:1/x", "PostgreSQL at 127.0.0.1:1 refused"),
    ("HWFLEET_BUS", "foo://x", "not a bus URL"),
    ("HWFLEET_LOG_LEVEL", "loud", "'loud' is not a log level"),
    ("HWFLEET_API_LISTEN", "bad", "'bad' is not HOST:PORT"),
    ("HWFLEET_API_LISTEN", "127.0.0.1:99999", "port '99999' is not a number from 0 to 65535"),
    ("HWFLEET_SCAN_QUIET_TIMEOUT", "soon", "'soon' is not a duration"),
]


@pytest.mark.parametrize(("variable", "value", "problem"), START_UP_MISTAKES)
def test_a_bad_server_setting_is_one_line(
    tmp_path: Path, variable: str, value: str, problem: str
) -> None:
    line = one_line_error(hwfleet("server", env=server_env(tmp_path, **{variable: value})))
    flag = "--" + variable.removeprefix("HWFLEET_").lower().replace("_", "-")
    assert problem in line
    assert variable in line and f"set {flag} or {variable}" in line  # the source and the fix


@pytest.mark.postgres
def test_a_missing_postgresql_database_says_how_to_create_it(tmp_path: Path) -> None:
    if not _reachable(DB_URL, 5432):
        service_missing(f"PostgreSQL is not reachable at {DB_URL}")
    name = f"hwfleet_absent_{uuid.uuid4().hex[:8]}"
    url = urlunsplit(urlsplit(DB_URL)._replace(path=f"/{name}"))
    line = one_line_error(hwfleet("server", "--db", url, env=server_env(tmp_path)))
    assert f"has no database '{name}'" in line and f"createdb {name}" in line
    assert "(db from --db)" in line


def test_settings_from_a_config_file_name_the_file(tmp_path: Path) -> None:
    config = tmp_path / "hwfleet.toml"
    config.write_text('[server]\napi_listen = "nowhere"\n')
    data = {"HWFLEET_DATA_DIR": str(tmp_path / "ctl")}  # a file value loses to the variables
    line = one_line_error(hwfleet("server", "--config", str(config), env=data))
    assert f"api_listen = 'nowhere' (from {config})" in line
    config.write_text('bus = "amqp://guest:guest@127.0.0.1/"\n[server]\n')
    line = one_line_error(hwfleet("server", env={**data, "HWFLEET_CONFIG": str(config)}))
    assert f"{config}: unknown top-level key 'bus'" in line


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    ("flag", "what"), [("--agent-listen", "agent gateway"), ("--api-listen", "REST API")]
)
def test_a_port_in_use_names_the_address_flag_and_variable(
    tmp_path: Path, taken_port: int, flag: str, what: str
) -> None:
    args = ["server", "--log-level", "warning", flag, f"127.0.0.1:{taken_port}"]
    done = hwfleet(*args, env=server_env(tmp_path))
    # The start-up log may come first (warning level); the error is the last line, alone.
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    last = done.stderr.splitlines()[-1]
    variable = "HWFLEET_" + flag.removeprefix("--").upper().replace("-", "_")
    assert last == (
        f"hwfleet: {what} address 127.0.0.1:{taken_port} is already in use (another hwfleet "
        f"server?) — set {flag} or {variable} ({flag.removeprefix('--').replace('-', '_')} "
        f"from {flag})"
    )


@pytest.mark.parametrize(
    ("api", "problem"),
    [
        ("127.0.0.1:8780", "HWFLEET_API = '127.0.0.1:8780' is not an http:// or https:// URL"),
        ("http://127.0.0.1:99999", "HWFLEET_API = 'http://127.0.0.1:99999': Port out of range"),
    ],
)
def test_an_api_url_without_a_scheme_is_one_line(tmp_path: Path, api: str, problem: str) -> None:
    line = one_line_error(hwfleet("devices", env={"HWFLEET_API": api, "HWFLEET_TOKEN": "t"}))
    assert problem in line and "set --api or HWFLEET_API" in line


def test_keys_token_takes_a_ttl_with_a_unit(server: Server) -> None:
    before = datetime.now(UTC)
    reply = server.json("keys", "token", "--ttl", "1h")
    assert isinstance(reply, dict)
    valid_for = datetime.fromisoformat(reply["expires_at"]) - before
    assert 3590 <= valid_for.total_seconds() <= 3700
    done = server.cli("keys", "token", "--ttl", "1 fortnight", check=False)
    assert done.returncode == 2 and "is not a duration" in done.stderr


def test_config_help_shows_the_table_name() -> None:
    for command, table in (("server", "[server]"), ("agent", "[agent]")):
        done = hwfleet(command, "--help", env={"COLUMNS": "200"})
        assert (
            done.returncode == 0
            and f"TOML file with a{'n' if command == 'agent' else ''} {table} table" in done.stdout
        )


def test_a_second_simulator_moves_to_the_next_block_and_says_so(tmp_path: Path) -> None:
    # Another simulator's device 0 (on a discovery port of this test's own).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.bind(("127.1.0.1", 0))
        port = str(other.getsockname()[1])
        common = ["sim", "--devices", "2", "--controller", "127.0.0.1:1", "--insecure"]
        chosen = hwfleet(*common, "--discovery-port", port, "--address-base", "127.1.0.1")
        line = one_line_error(chosen)
        assert f"UDP 127.1.0.1:{port} (discovery for simulated device 0) is already in use" in line
        log = tmp_path / "sim.log"
        with log.open("w") as err:
            moved = subprocess.Popen(
                [*HWFLEET, *common, "--discovery-port", port, "--data-dir", str(tmp_path)],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        try:
            wait_until(lambda: "instead" in log.read_text())
            assert f"UDP 127.1.0.1:{port} is taken" in log.read_text()
            assert "device 0 uses 127.2.0.1 instead" in log.read_text()
        finally:
            moved.terminate()
            moved.wait(15)


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("sim", "--devices", "1", "--transport", "amqp", "--bus", "foo://x"), "scheme 'foo'"),
        (("sim", "--devices", "1", "--controller", "127.0.0.1:1", "--log-level", "loud"), "loud"),
        (("demo", "--api-listen", "bad"), "--api-listen: 'bad' is not HOST:PORT"),
        (("mes-sim", "--profile", "/nonexistent.json"), "/nonexistent.json: $: cannot read"),
    ],
)
def test_other_commands_report_bad_options_in_one_line(args: tuple[str, ...], problem: str) -> None:
    assert problem in one_line_error(hwfleet(*args))
