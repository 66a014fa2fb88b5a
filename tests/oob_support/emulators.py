"""Starting the BMC emulators the oob tests talk to, each on its own loopback port.

Readiness is a connect loop under a deadline (the emulator prints nothing reliable
when it is ready); every process is ended by its own pid when the test is done.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import httpx

from tests.processes import stop

ROOT = Path(__file__).resolve().parents[2]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_tcp(port: int, proc: subprocess.Popen[bytes], deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"emulator exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)  # polling a port that is not yet listening: nothing to wait on
    raise TimeoutError(f"emulator did not listen on 127.0.0.1:{port} in {deadline} s")


@dataclass
class Redfish:
    url: str
    username: str
    password: str
    proc: subprocess.Popen[bytes]

    def control(self, what: str, body: dict[str, object]) -> None:
        r = httpx.post(f"{self.url}/_test/{what}", json=body, auth=(self.username, self.password))
        r.raise_for_status()

    def state(self) -> dict[str, Any]:
        """The emulator's test counters: SimpleUpdate calls and update tasks."""
        r = httpx.get(f"{self.url}/_test/state", auth=(self.username, self.password))
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body

    def stop(self) -> None:
        stop(self.proc)


#: The emulated BMC's password (what the tests check never leaks).
BMC_PASSWORD = "s3cret-BMC-pw"


@contextlib.contextmanager
def redfish_emulator(tmp: Path, password: str = BMC_PASSWORD) -> Iterator[Redfish]:
    tmp.mkdir(parents=True, exist_ok=True)
    auth = tmp / "htpasswd"
    digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    auth.write_text(f"admin:{digest}\n")
    port = free_port()
    log = (tmp / "redfish.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.oob_support.redfish_emulator",
            "--port",
            str(port),
            "--auth-file",
            str(auth),
            "--state-dir",
            str(tmp / "state"),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_tcp(port, proc)
        yield Redfish(f"http://127.0.0.1:{port}", "admin", password, proc)
    finally:
        stop(proc)
        log.close()
