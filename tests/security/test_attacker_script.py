"""A standalone attacker against real processes: `hwfleet server` and `hwfleet sim --devices 3`.

:func:`attack` is what someone on the network could run: the standard library
(``socket``, ``ssl``, ``json``) and the ``openssl`` command, no hwfleet code.
It tries commands without a certificate, guesses the enrollment password,
speaks plaintext to the TLS port and shows a self-made client certificate.
Afterwards the operator's view (REST, ``Authorization: Bearer`` from
``<data-dir>/operator.token``) must show exactly the three legitimate devices,
all answering ping. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.conftest import Server, start_server, start_sim, stop, wait_until

GUESSES = 30
METHODS = [
    "handshake",
    "ping",
    "status",
    "log",
    "task_status",
    "inventory",
    "scan",
    "decom.disk_erase",
    "decom.firmware_secure",
    "decom.qc",
    "standby.run_image",
    "standbye.run_image",
    "run",
]


# -- the attacker: stdlib and openssl only --------------------------------------------------


def attack(agent_address: str, workdir: Path, victim_uuid: str) -> dict[str, Any]:
    """Attack the agent port at ``agent_address`` ("H:P"); report what each attempt got."""
    host, _, port_text = agent_address.rpartition(":")
    port = int(port_text)
    workdir.mkdir(parents=True, exist_ok=True)
    my_uuid = str(uuid.uuid4())
    report: dict[str, Any] = {"uuid": my_uuid}

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)

    # A key and CSR of our own, and a self-signed "device certificate" naming the victim.
    openssl(
        "req", "-new", "-newkey", "ed25519", "-nodes", "-subj", f"/CN={my_uuid}",
        "-keyout", str(workdir / "my.key"), "-out", str(workdir / "my.csr"),
    )  # fmt: skip
    openssl(
        "req", "-x509", "-new", "-newkey", "ed25519", "-nodes", "-days", "1",
        "-subj", f"/CN={victim_uuid}",
        "-addext", f"subjectAltName=URI:urn:hwfleet:device:{victim_uuid}",
        "-addext", "extendedKeyUsage=clientAuth",
        "-keyout", str(workdir / "forged.key"), "-out", str(workdir / "forged.crt"),
    )  # fmt: skip
    csr = (workdir / "my.csr").read_text()

    def tls(cert: tuple[Path, Path] | None = None) -> ssl.SSLSocket:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if cert is not None:
            context.load_cert_chain(*cert)
        raw = socket.create_connection((host, port), timeout=10)
        return context.wrap_socket(raw)

    def call(conn: ssl.SSLSocket, reader: Any, method: str, params: dict[str, Any]) -> Any:
        line = {"version": "1", "id": str(uuid.uuid4()), "method": method, "params": params}
        conn.sendall(json.dumps(line).encode() + b"\n")
        reply = reader.readline()
        return json.loads(reply) if reply else None

    # 1. Every command on TLS without a client certificate, posing as the victim.
    params = {
        "uuid": victim_uuid,
        "serial": "SN-EVIL",
        "task_id": str(uuid.uuid4()),
        "state": "complete",
        "level": "emerg",
        "msg": "pwned",
        "operationid": 1,
    }
    with tls() as conn, conn.makefile("rb") as reader:
        replies = {m: call(conn, reader, m, params) for m in METHODS}
    report["commands"] = {
        m: ("RESULT" if r is None or "result" in r else r["error"]["code"])
        for m, r in replies.items()
    }

    # 2. Guess the enrollment password.
    verdicts = []
    with tls() as conn, conn.makefile("rb") as reader:
        for n in range(GUESSES):
            guess = {"uuid": my_uuid, "csr": csr, "password": f"password{n}"}
            reply = call(conn, reader, "enroll", guess)
            if reply is None or "result" in reply:
                verdicts.append("ENROLLED")
            elif "too many failed" in reply["error"]["msg"]:
                verdicts.append("limited")
            else:
                verdicts.append(reply["error"]["code"])
        # Then try to act on the link anyway.
        after = call(conn, reader, "handshake", {"uuid": my_uuid, "serial": 1})
    report["guesses"] = verdicts
    report["handshake_after_guessing"] = after

    # 3. Plaintext on the TLS port.
    received = b""
    with socket.create_connection((host, port), timeout=10) as plain:
        plain.sendall(b'{"version": "1", "id": "p", "method": "ping", "params": {}}\n')
        try:
            while chunk := plain.recv(65536):
                received += chunk
        except (ConnectionResetError, TimeoutError) as exc:
            report["plaintext_error"] = type(exc).__name__
    report["plaintext_reply"] = received

    # 4. The forged client certificate.
    try:
        forged = (workdir / "forged.crt", workdir / "forged.key")
        with tls(forged) as conn, conn.makefile("rb") as reader:
            reply = call(conn, reader, "handshake", {"uuid": victim_uuid, "serial": 1})
        report["forged_cert"] = "ANSWERED" if reply else "closed"
    except (ssl.SSLError, ConnectionError) as exc:
        report["forged_cert"] = f"refused: {type(exc).__name__}"
    return report


# -- the operator's side --------------------------------------------------------------------


class Rest:
    """The operator's REST client (the check, not the attack: any HTTP client would do)."""

    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token

    def status(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> int:
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        with httpx.Client(base_url=self.base, headers=headers, timeout=30) as client:
            return client.request(method, path, json=body).status_code

    def request(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.base, headers=headers, timeout=30) as client:
            reply = client.request(method, path, json=body)
        assert reply.status_code == 200, (path, reply.status_code, reply.text)
        return reply.json()

    def online(self) -> list[str]:
        return sorted(d["uuid"] for d in self.request("GET", "/api/v1/devices"))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path / "ctl")
    try:
        yield srv
    finally:
        stop(srv.process)


@pytest.fixture
def sim(server: Server, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    process = start_sim(server, tmp_path, "--devices", "3", "--no-discovery")
    try:
        yield process
    finally:
        stop(process)


def test_attacker_gets_nothing_and_only_the_three_devices_answer(
    server: Server, sim: subprocess.Popen[str], tmp_path: Path
) -> None:
    rest = Rest(server.api, (server.data_dir / "operator.token").read_text().strip())

    def three_online() -> bool:
        assert sim.poll() is None, (tmp_path / "sim.log").read_text()
        devices = rest.request("GET", "/api/v1/devices")
        return len(devices) == 3 and all(d["state"] == "online" for d in devices)

    wait_until(three_online, timeout=60)
    legit = rest.online()

    report = attack(server.agent, tmp_path / "attacker", victim_uuid=legit[0])

    refused = {"handshake", "ping", "log", "task_status"}
    assert report["commands"] == {
        m: "unauthorized" if m in refused else "unknown_method" for m in METHODS
    }
    assert report["guesses"] == ["unauthorized"] * 10 + ["limited"] * (GUESSES - 10)
    assert report["handshake_after_guessing"]["error"]["code"] == "unauthorized"
    plaintext = report["plaintext_reply"]
    assert b"{" not in plaintext and b"result" not in plaintext and len(plaintext) < 64
    assert report["forged_cert"] == "closed" or report["forged_cert"].startswith("refused")

    # The operator's view: exactly the three legitimate devices, all answering.
    assert rest.online() == legit
    assert all(d["state"] == "online" for d in rest.request("GET", "/api/v1/devices"))
    keys = rest.request("GET", "/api/v1/keys")
    assert sorted(k["device_uuid"] for k in keys) == legit
    assert all(k["state"] == "accepted" for k in keys)
    pings = rest.request("POST", "/api/v1/devices/ping", {"all": True, "timeout": 10})
    assert sorted(pings) == legit and all(p["ok"] for p in pings.values()), pings
    theirs = rest.request("POST", "/api/v1/devices/ping", {"uuids": [report["uuid"]]})
    assert theirs[report["uuid"]]["ok"] is False
    events = rest.request("GET", "/api/v1/events?limit=1000")
    assert not [e for e in events if report["uuid"] in json.dumps(e)]
    # And the REST API itself wants the operator token.
    assert rest.status("GET", "/api/v1/devices", auth=False) == 401
    # The legitimate devices never dropped while this went on.
    log = (tmp_path / "sim.log").read_text()
    assert "reconnecting" not in log, log
