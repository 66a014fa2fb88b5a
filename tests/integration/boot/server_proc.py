"""``hwfleet server`` as a process inside the boot network's server namespace, and the CLI.

The server and everything it starts (Kea, proxyDHCP, TFTP, the API on 10.231.77.1:8780)
live in the namespace, as on a real boot server; the CLI runs there too, as an operator's
shell would. Used by the proxyDHCP and Kea lifecycle tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.boot.bootnet import SERVER_IF, SERVER_IP, run_in

API = f"http://{SERVER_IP}:8780"
READY = "REST API"


@dataclass
class ServerProc:
    proc: asyncio.subprocess.Process
    ns: str
    data: Path
    log: Path

    async def cli(self, *args: str) -> tuple[int, str]:
        env = ["env", f"HWFLEET_API={API}"]
        code, out = await run_in(
            self.ns, *env, sys.executable, "-m", "hwfleet.cli", *args, "--data-dir",
            str(self.data), timeout=60,
        )  # fmt: skip
        return code, out.decode()

    async def cli_json(self, *args: str) -> Any:
        code, out = await self.cli(*args, "--json")
        assert code == 0, out
        return json.loads(out)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        return await asyncio.wait_for(self.proc.wait(), timeout)


async def _copy(stream: asyncio.StreamReader, log: Path, ready: asyncio.Future[None]) -> None:
    with log.open("ab") as sink:
        while line := await stream.readline():
            sink.write(line)
            sink.flush()
            if READY in line.decode(errors="replace") and not ready.done():
                ready.set_result(None)
    if not ready.done():
        ready.set_exception(AssertionError(f"the server ended before it served:\n{tail(log)}"))


def tail(log: Path, size: int = 3000) -> str:
    return log.read_text(errors="replace")[-size:] if log.exists() else ""


@asynccontextmanager
async def server_in(
    ns: str, data: Path, *flags: str, env: dict[str, str] | None = None
) -> AsyncIterator[ServerProc]:
    """A running ``hwfleet server --boot-interface kea0 …`` (stopped with SIGTERM on exit)."""
    log = data.parent / f"{data.name}-server.log"
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", ns, sys.executable, "-m", "hwfleet", "server",
        "--data-dir", str(data), "--bus", "memory://",
        "--agent-listen", f"{SERVER_IP}:7800", "--api-listen", f"{SERVER_IP}:8780",
        "--boot-interface", SERVER_IF, *flags,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert proc.stdout is not None
    ready = asyncio.get_running_loop().create_future()
    copier = asyncio.create_task(_copy(proc.stdout, log, ready))
    server = ServerProc(proc, ns, data, log)
    try:
        await asyncio.wait_for(ready, 120)
        yield server
    finally:
        if proc.returncode is None:
            try:
                await server.stop()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(copier, 10)


async def process_exit(pid: int, timeout: float) -> bool:
    """Whether ``pid`` (not a child of ours) exits within ``timeout``: awaited on a pidfd."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, lambda: None if gone.done() else gone.set_result(None))
    try:
        await asyncio.wait_for(gone, timeout)
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)
        os.close(fd)
