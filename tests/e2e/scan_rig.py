"""A burn-in scan rig of real processes: `hwfleet mes-sim`, `hwfleet server`, `hwfleet sim`.

The fleet is four generated devices whose MES records cover every DESIGN §5 case:

* ``upper``   — integer sn; the MES lists its MACs in upper case: passes.
* ``text``    — string sn (``"SN-…"``), the MES lists exactly its MACs: passes.
* ``mismatch`` — integer sn; the MES has one MAC different (and upper case): fails, with
  the device's MAC scored ``"0"`` and the MES-only MAC added as ``"0"``.
* ``unregistered`` — the MES answers ``Device is not registered``: fails with an error.

:func:`check_posts` checks what the MES received field by field against DESIGN §5.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec

from hwfleet.sim.profiles import generate
from tests.e2e.conftest import HWFLEET, PASSWORD, Server, start_server, wait_until
from tests.processes import stop

#: Bounded waits for another process (seconds); generous for a loaded 2-core machine.
DEADLINE = 60.0
KINDS = ("upper", "text", "mismatch", "unregistered")
POST_PATHS = {
    "/log/deviceScan": "deviceScan",
    "/operations/pair": "pair",
    "/notifications/devicescan": "notification",
}


def free_port() -> int:
    """A port nobody listens on right now (for a process that must keep its port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Fleet:
    """The profiles written for the rig and what each device should score."""

    device_profile: Path
    mes_profile: Path
    #: kind → the device (as the sim reports it: sn, interfaces).
    devices: dict[str, dict[str, Any]]


def write_fleet(directory: Path, seed: int) -> Fleet:
    profile = msgspec.to_builtins(generate(len(KINDS), seed))
    devices = dict(zip(KINDS, profile["devices"], strict=True))
    devices["text"]["sn"] = f"SN-{seed}-TEXT"  # a serial that is a JSON string
    for device in devices.values():
        assert len(device["interfaces"]) >= 1
    rows: dict[str, list[dict[str, Any]] | None] = {}
    for kind, device in devices.items():
        macs = [{"interface": nic["name"], "macaddr": nic["mac"]} for nic in device["interfaces"]]
        if kind == "upper":
            macs = [{**m, "macaddr": m["macaddr"].upper()} for m in macs]
        if kind == "mismatch":
            macs[-1] = {"interface": macs[-1]["interface"], "macaddr": "0A:BC:DE:F0:12:34"}
        rows[kind] = (
            None if kind == "unregistered" else [{"serialNo": device["sn"], "macInfo": macs}]
        )
    records = {str(devices[k]["sn"]): r for k, r in rows.items() if r is not None}
    mes = {"records": records, "unregistered": [devices["unregistered"]["sn"]]}
    directory.mkdir(parents=True, exist_ok=True)
    device_profile = directory / "devices.json"
    device_profile.write_bytes(msgspec.json.encode(profile))
    mes_profile = directory / "mes.json"
    mes_profile.write_bytes(msgspec.json.encode({**profile, "mes": mes}))
    return Fleet(device_profile, mes_profile, devices)


def _mac(nic: dict[str, Any], status: str) -> dict[str, str]:
    return {"interface": nic["name"], "macaddr": nic["mac"], "scanstatus": status}


def check_entry(kind: str, fleet: Fleet, entry: dict[str, Any]) -> None:
    """One ``scaninfo`` entry against DESIGN §5 for the device of that kind."""
    device = fleet.devices[kind]
    nics = device["interfaces"]
    assert entry["sn"] == device["sn"] and type(entry["sn"]) is type(device["sn"])
    if kind in ("upper", "text"):
        assert entry == {"macinfo": [_mac(n, "1") for n in nics], "sn": device["sn"], "result": "1"}
    elif kind == "mismatch":
        local = [_mac(n, "1") for n in nics[:-1]] + [_mac(nics[-1], "0")]
        mes_only = {
            "interface": nics[-1]["name"],
            "macaddr": "0A:BC:DE:F0:12:34",
            "scanstatus": "0",
        }
        assert entry == {"macinfo": [*local, mes_only], "sn": device["sn"], "result": "0"}
    else:
        assert set(entry) == {"macinfo", "sn", "result", "error"}
        assert entry["macinfo"] == [_mac(n, "0") for n in nics]
        assert entry["result"] == "0"
        assert "not registered" in entry["error"]


def check_key_order(document: dict[str, Any]) -> None:
    """The seed's key order: operationid, pairInfo, scaninfo; macinfo, sn, result (then any
    extra such as error); interface, macaddr, scanstatus."""
    assert list(document) == ["operationid", "pairInfo", "scaninfo"], list(document)
    for entry in document["scaninfo"]:
        assert list(entry)[:3] == ["macinfo", "sn", "result"], list(entry)
        for mac in entry["macinfo"]:
            assert list(mac) == ["interface", "macaddr", "scanstatus"], list(mac)


def check_document(
    fleet: Fleet, operationid: int, document: Any, *, key_order: bool = True
) -> None:
    """The seed-000 deviceScan document: exact keys, one entry per device, each as §5 says."""
    assert isinstance(document, dict)
    assert set(document) == {"operationid", "pairInfo", "scaninfo"}
    if key_order:
        check_key_order(document)
    assert document["operationid"] == operationid and type(document["operationid"]) is int
    assert document["pairInfo"] == []
    by_sn = {json.dumps(e["sn"]): e for e in document["scaninfo"]}
    assert len(by_sn) == len(document["scaninfo"]) == len(KINDS), document["scaninfo"]
    for kind, device in fleet.devices.items():
        check_entry(kind, fleet, by_sn[json.dumps(device["sn"])])


def check_posts(
    fleet: Fleet, operationid: int, received: dict[str, Any], *, key_order: bool = True
) -> dict[str, Any]:
    """Exactly one deviceScan, one Pair and one notification, none twice; returns deviceScan."""
    assert received["duplicates"] == [], received["duplicates"]
    posts = received["posts"]
    assert sorted(p["path"] for p in posts) == sorted(POST_PATHS), posts
    keys = [p["key"] for p in posts]
    assert all(keys) and len(set(keys)) == len(keys)
    assert received["counts"] == dict.fromkeys(keys, 1)
    body = {POST_PATHS[p["path"]]: p["body"] for p in posts}
    check_document(fleet, operationid, body["deviceScan"], key_order=key_order)
    passing = [fleet.devices["upper"]["sn"], fleet.devices["text"]["sn"]]
    assert set(body["pair"]) == {"operationid", "snArray"}
    if key_order:
        assert list(body["pair"]) == ["operationid", "snArray"]
        assert list(body["notification"]) == ["id", "status"]
    assert body["pair"]["operationid"] == operationid
    snarray = body["pair"]["snArray"]
    assert sorted(map(json.dumps, snarray)) == sorted(map(json.dumps, passing))  # types kept
    assert body["notification"] == {"id": str(operationid), "status": "2 devices passed scanning"}
    document: dict[str, Any] = body["deviceScan"]
    return document


def _wait_for_line(path: Path, pattern: str, process: subprocess.Popen[str]) -> re.Match[str]:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        match = re.search(pattern, path.read_text())
        if match:
            return match
        if process.poll() is not None:
            raise AssertionError(f"{path.name}: exited {process.returncode}: {path.read_text()}")
        time.sleep(0.05)  # waiting for another process's log line, bounded by the deadline
    raise AssertionError(f"{path.name}: no {pattern!r} within {DEADLINE} s: {path.read_text()}")


@dataclass
class ScanRig:
    """mes-sim + one controller at a time + the simulated fleet, all on 127.0.0.1."""

    root: Path
    carrier: str  # "stream" | "amqp"
    bus: str | None
    fleet: Fleet
    #: The controller's quiet timeout: far beyond DEADLINE, so a scan can only complete here
    #: by every device answering (and a resumed scan's rebroadcast, at half of it, never helps).
    quiet: float = 300.0
    #: The controller's database URL (None: SQLite in its data dir).
    db: str | None = None
    #: Check the seed's key order in documents (see test_scan_key_order_on_postgres).
    key_order: bool = True
    agent_port: int = field(default_factory=free_port)
    mes: subprocess.Popen[str] | None = None
    mes_url: str = ""
    server: Server | None = None
    sims: subprocess.Popen[str] | None = None
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    _http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))
    _starts: int = 0

    # -- processes ----------------------------------------------------------------------------

    def _spawn(self, args: list[str], log: Path) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with log.open("w") as out:
            process = subprocess.Popen(
                [*HWFLEET, *args], stdout=out, stderr=subprocess.STDOUT, env=env, text=True
            )
        self.processes.append(process)
        return process

    def start_mes(self) -> None:
        listen = f"127.0.0.1:{free_port()}"
        log = self.root / "mes.log"
        args = ["mes-sim", "--profile", str(self.fleet.mes_profile), "--listen", listen]
        self.mes = self._spawn([*args, "--log-level", "warning"], log)
        self.mes_url = _wait_for_line(log, r"mes-sim listening on (\S+)", self.mes).group(1)

    def start_server(self) -> Server:
        """Start (or restart) the controller on the same data dir and the same agent port."""
        extra = ["--mes", self.mes_url, "--scan-quiet-timeout", str(self.quiet)]
        if self.bus is not None:
            extra += ["--bus", self.bus]
        if self.db is not None:
            extra += ["--db", self.db]
        self._starts += 1
        self.server = start_server(
            self.root / "ctl",
            *extra,
            agent_listen=f"127.0.0.1:{self.agent_port}",
            log_name=f"server-{self._starts}.log",
        )
        self.processes.append(self.server.process)
        return self.server

    def kill_server(self) -> None:
        """SIGKILL: no shutdown code runs, as when the machine loses power."""
        assert self.server is not None
        self.server.process.send_signal(signal.SIGKILL)
        self.server.process.wait(15)

    def start_sims(self) -> None:
        log = self.root / "sim.log"
        args = [
            "sim",
            "--profile",
            str(self.fleet.device_profile),
            "--data-dir",
            str(self.root / "sim"),
            "--enroll-password",
            PASSWORD,
            "--no-discovery",
            "--log-level",
            "info",
            "--transport",
            self.carrier,
        ]
        if self.carrier == "amqp":
            args += ["--bus", self.bus or ""]
        else:
            args += ["--controller", f"127.0.0.1:{self.agent_port}"]
        self.sims = self._spawn(args, log)
        n = len(KINDS)
        _wait_for_line(log, rf"{n}/{n} simulated devices connected", self.sims)
        self.wait_online()

    def wait_online(self) -> None:
        def online() -> bool:
            assert self.server is not None
            devices = self.server.json("devices")
            assert isinstance(devices, list)
            return [d["state"] for d in devices] == ["online"] * len(KINDS)

        wait_until(online, DEADLINE)

    def close(self) -> None:
        if self.mes is not None and self.mes.poll() is None:
            # Let go of held requests, or the MES waits for them before it stops.
            with contextlib.suppress(httpx.HTTPError):
                self.faults(latency=0)
        for process in reversed(self.processes):
            stop(process)
        self._http.close()

    # -- the MES and the API ------------------------------------------------------------------

    def received(self) -> dict[str, Any]:
        answer = self._http.get(f"{self.mes_url}/_received")
        answer.raise_for_status()
        body: dict[str, Any] = answer.json()
        return body

    def reset_mes(self) -> None:
        """Forget what the MES received (``POST /_reset``)."""
        self._http.post(f"{self.mes_url}/_reset").raise_for_status()

    def faults(self, **spec: float) -> None:
        self._http.post(f"{self.mes_url}/_faults", json=spec).raise_for_status()

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        assert self.server is not None
        token = (self.server.data_dir / "operator.token").read_text().strip()
        answer = self._http.request(
            method,
            f"{self.server.api}{path}",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        )
        answer.raise_for_status()
        return answer.json()

    def _get(self, path: str) -> Any:
        return self._request("GET", path)

    def api(self, path: str) -> dict[str, Any]:
        body = self._get(path)
        assert isinstance(body, dict)
        return body

    def api_list(self, path: str) -> list[dict[str, Any]]:
        body = self._get(path)
        assert isinstance(body, list)
        return body

    def start_scan(self) -> int:
        """``POST /api/v1/scans`` (what ``hwfleet scan`` does, without a CLI start-up)."""
        started = self._request("POST", "/api/v1/scans", {})
        return int(started["operationid"])

    def wait_finished(self, operationid: int) -> dict[str, Any]:
        """Until the scan is finished and its three posts are delivered (the controller's
        outbox says so, and the MES has them); returns the scan."""
        scan: dict[str, Any] = {}

        def finished() -> bool:
            nonlocal scan
            scan = self.api(f"/api/v1/scans/{operationid}")
            if scan["state"] == "running":
                return False
            outbox = self.api_list("/api/v1/outbox?state=pending")
            return not outbox and len(self.received()["posts"]) >= 3

        try:
            wait_until(finished, DEADLINE)
        except AssertionError:
            raise AssertionError(
                f"scan {operationid} not finished and posted within {DEADLINE} s: scan {scan}, "
                f"MES {self.received()}; logs in {self.root}"
            ) from None
        return scan


def check_scan(rig: ScanRig, operationid: int, scan: dict[str, Any]) -> None:
    """The stored scan: complete, every device answered for itself (no 'no reply' entries)."""
    assert scan["state"] == "complete", scan
    assert scan["error"] is None
    assert scan["answered"] == scan["expected"] == len(KINDS)
    check_document(rig.fleet, operationid, scan["document"], key_order=rig.key_order)
    for result in scan["results"]:
        assert not (result["error"] or "").startswith("internal error"), result


def make_rig(
    root: Path, carrier: str, bus: str | None, seed: int, db: str | None = None
) -> ScanRig:
    fleet = write_fleet(root / "profiles", seed)
    return ScanRig(root, carrier, bus, fleet, db=db)
