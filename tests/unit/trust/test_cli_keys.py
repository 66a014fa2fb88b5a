"""``hwfleet keys`` end to end: the CLI over real HTTP to a uvicorn server with the router."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import typer
import uvicorn
from fastapi import FastAPI
from typer.testing import CliRunner

from hwfleet.api import keys as keys_api
from hwfleet.api.deps import provide
from hwfleet.cli import keys as keys_cli
from hwfleet.cli.client import CliError
from hwfleet.store import open_store
from hwfleet.trust import CertificateAuthority, EnrollmentService, EnrollParams

T = TypeVar("T")
OPERATOR = "cli-test-operator-token"


class Controller:
    """A uvicorn server with the keys router and a real service, on its own thread."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)  # connections queue until uvicorn accepts them
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),))
        self.service: EnrollmentService | None = None
        self.server: uvicorn.Server | None = None

    async def _main(self) -> None:
        store = await open_store(f"sqlite+aiosqlite:///{self.data_dir / 'hwfleet.db'}")
        ca = CertificateAuthority.load_or_create(self.data_dir)
        self.service = EnrollmentService(store, ca, password="pw")
        app = FastAPI()
        provide(app, self.service)
        app.state.operator_token = OPERATOR
        app.include_router(keys_api.router)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.ready.set()
        try:
            await self.server.serve(sockets=[self.sock])
        finally:
            await store.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def start(self) -> None:
        self.thread.start()
        assert self.ready.wait(30)

    def stop(self) -> None:
        assert self.server is not None
        self.server.should_exit = True
        self.thread.join(30)
        self.loop.close()
        self.sock.close()


@pytest.fixture
def controller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Controller]:
    monkeypatch.delenv("HWFLEET_TOKEN", raising=False)
    (tmp_path / "operator.token").write_text(OPERATOR + "\n")
    ctl = Controller(tmp_path)
    ctl.start()
    try:
        yield ctl
    finally:
        ctl.stop()


@pytest.fixture
def hwfleet(controller: Controller) -> Callable[..., Any]:
    app = typer.Typer()
    keys_cli.register(app)
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        common = ["--api", controller.url, "--data-dir", str(controller.data_dir)]
        return runner.invoke(app, ["keys", *args, *common])

    return invoke


def test_token_then_list_reject_delete(
    controller: Controller, hwfleet: Callable[..., Any], new_csr: Callable[..., str]
) -> None:
    created = hwfleet("token", "--ttl", "300", "--json")
    assert created.exit_code == 0, created.output
    token = json.loads(created.stdout)["token"]
    plain = hwfleet("token")
    assert plain.exit_code == 0 and plain.stdout.strip().startswith("hwfe_")
    assert controller.service is not None
    device = str(uuid.uuid4())
    reply = controller.run(
        controller.service.enroll(
            EnrollParams(uuid=device, csr=new_csr(), token=token), source_ip="127.0.0.1"
        )
    )
    listed = hwfleet("list", "--json")
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)
    assert (row["id"], row["device_uuid"], row["state"], row["source"]) == (
        reply.key_id,
        device,
        "accepted",
        "token",
    )
    assert row["fingerprint"].startswith("SHA256:")
    table = hwfleet("list")
    assert reply.key_id in table.stdout and "accepted" in table.stdout
    rejected = hwfleet("reject", reply.key_id, "--json")
    assert json.loads(rejected.stdout)["state"] == "rejected"
    deleted = hwfleet("delete", reply.key_id)
    assert deleted.exit_code == 0 and "deleted" in deleted.stdout
    assert json.loads(hwfleet("list", "--json").stdout) == []


def test_unknown_key_is_a_one_line_error(hwfleet: Callable[..., Any]) -> None:
    result = hwfleet("accept", "0123456789abcdef")
    assert result.exit_code != 0
    assert isinstance(result.exception, CliError)
    assert "404" in str(result.exception) and "no key" in str(result.exception)


def test_bad_ttl_is_refused_with_the_reason(hwfleet: Callable[..., Any]) -> None:
    # Not a duration, or none at all: the CLI refuses it before asking the controller.
    for ttl, reason in (("0", "must be at least"), ("1 fortnight", "is not a duration")):
        result = hwfleet("token", "--ttl", ttl)
        assert result.exit_code == 2 and reason in result.output
    # A duration the controller does not allow (over 30 days): its reason, one line.
    result = hwfleet("token", "--ttl", "31d")
    assert isinstance(result.exception, CliError)
    assert "422" in str(result.exception) and "ttl" in str(result.exception)


def test_ttl_takes_units(hwfleet: Callable[..., Any]) -> None:
    before = datetime.now(UTC)
    reply = json.loads(hwfleet("token", "--ttl", "15m", "--json").stdout)
    valid_for = (datetime.fromisoformat(reply["expires_at"]) - before).total_seconds()
    assert 890 <= valid_for <= 910
