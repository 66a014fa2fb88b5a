"""DESIGN §8 driven the way outside scripts drive it: real server, real sim, the CLI."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

from tests.e2e.conftest import HWFLEET, Server, start_sim, wait_until

PROFILE = {
    "devices": [
        {
            "sn": 1001,
            "name": "rack1-u1",
            "model_id": "X11-A",
            "interfaces": [
                {"name": "enp4s0", "mac": "E0:18:7D:2E:CA:68", "pci": "0000:04:00.0"},
                {"name": "enp5s0", "mac": "e0:18:7d:2e:ca:69", "pci": "0000:05:00.0"},
            ],
            "pci": [
                {
                    "address": "0000:04:00.0",
                    "vendor": "0x8086",
                    "device": "0x1533",
                    "class": "0x020000",
                }
            ],
            "memory_mb": 16384,
            "cpus": [],
            "disks": [],
        },
        {
            "sn": "SN-0002",
            "name": "rack1-u2",
            "model_id": "X11-B",
            "interfaces": [{"name": "eno1", "mac": "00:18:7d:a4:cc:a6", "pci": "0000:02:00.3"}],
            "pci": [],
            "memory_mb": 0,
            "cpus": [],
            "disks": [],
        },
    ]
}
DEVICE_FIELDS = {
    "uuid",
    "name",
    "serial",
    "model_id",
    "version",
    "ipaddr",
    "st_id",
    "state",
    "last_seen",
}


def start_profile(server: Server, tmp_path: Path, profile: dict[str, Any]) -> subprocess.Popen[str]:
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))
    return start_sim(server, tmp_path, "--profile", str(path))


def test_devices_ping_run_tasks(server: Server, tmp_path: Path) -> None:
    sim = start_profile(server, tmp_path, PROFILE)
    try:
        wait_until(lambda: len([d for d in server.json("devices") if d["state"] == "online"]) == 2)  # type: ignore[union-attr]
        devices = server.json("devices")
        assert isinstance(devices, list)
        by_serial = {d["serial"]: d for d in devices}
        assert set(by_serial) == {1001, "SN-0002"}  # serials keep their JSON type
        for d in devices:
            assert set(d) == DEVICE_FIELDS
            assert d["state"] == "online" and d["st_id"] == 0
        assert by_serial[1001]["name"] == "rack1-u1"
        assert by_serial[1001]["model_id"] == "X11-A"
        assert by_serial[1001]["ipaddr"] == "127.1.0.1"
        assert by_serial["SN-0002"]["ipaddr"] == "127.1.0.2"

        pings = server.json("ping", "--all")
        assert isinstance(pings, dict) and set(pings) == {d["uuid"] for d in devices}
        for result in pings.values():
            assert result["ok"] is True and isinstance(result["rtt_ms"], float)
        one = server.json("ping", devices[0]["uuid"])
        assert isinstance(one, dict) and list(one) == [devices[0]["uuid"]]

        status = server.json("run", by_serial[1001]["uuid"], "status")
        assert isinstance(status, dict) and status["result"]["st_id"] == 0
        inventory = server.json("run", by_serial[1001]["uuid"], "inventory")
        assert isinstance(inventory, dict)
        macs = [n["mac"] for n in inventory["result"]["interfaces"]]
        assert [m.lower() for m in macs] == ["e0:18:7d:2e:ca:68", "e0:18:7d:2e:ca:69"]

        task = server.json(
            "run", by_serial[1001]["uuid"], "decom.qc", "--param", 'spec={"nic_count": 2}', "--wait"
        )
        assert isinstance(task, dict) and task["task"]["state"] == "complete"
        tasks = server.json("tasks")
        assert isinstance(tasks, list) and [t["id"] for t in tasks] == [task["task"]["id"]]
    finally:
        sim.terminate()
        sim.wait(10)


def test_ping_of_unknown_device_reports_not_ok(server: Server) -> None:
    done = server.cli("ping", "00000000-0000-0000-0000-000000000000", "--json", check=False)
    assert done.returncode == 2
    result = json.loads(done.stdout)
    assert result == {"00000000-0000-0000-0000-000000000000": {"ok": False, "rtt_ms": None}}


def test_bad_profile_names_the_field(server: Server, tmp_path: Path) -> None:
    bad = {
        "devices": [
            {
                "sn": 1,
                "name": "x",
                "model_id": "m",
                "interfaces": [{"name": "eth0", "mac": "not-a-mac"}],
            }
        ]
    }
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    done = subprocess.run(
        [*HWFLEET, "sim", "--controller", server.agent, "--profile", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "interfaces[0].mac" in done.stderr and "bad.json" in done.stderr


def test_operator_commands_without_a_server_say_how_to_fix_it(tmp_path: Path) -> None:
    token = tmp_path / "operator.token"
    token.write_text("t\n")
    done = subprocess.run(
        [*HWFLEET, "devices", "--api", "http://127.0.0.1:9", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "refused the connection" in done.stderr and "HWFLEET_API" in done.stderr


def test_wrong_token_is_refused(server: Server) -> None:
    env = {**server.env(), "HWFLEET_TOKEN": "wrong"}
    done = subprocess.run(
        [*HWFLEET, "devices"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1 and "refused the operator token" in done.stderr


def test_sigterm_stops_a_server_still_waiting_for_its_broker(tmp_path: Path) -> None:
    """Nothing listens on port 1: the server keeps retrying RabbitMQ, yet SIGTERM stops it."""
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                *HWFLEET,
                "server",
                "--data-dir",
                str(tmp_path / "ctl"),
                "--bus",
                "amqp://guest:guest@127.0.0.1:1/",
                "--agent-listen",
                "127.0.0.1:0",
                "--api-listen",
                "127.0.0.1:0",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        wait_until(lambda: "refused the connection" in log_path.read_text())
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert "is it running? set --bus or HWFLEET_BUS" in log_path.read_text()
    finally:
        process.kill()


def test_agent_flags_pin_the_controller_and_enroll_with_a_token(
    server: Server, tmp_path: Path
) -> None:
    """`hwfleet agent --controller-fingerprint … --enroll-token …`, as README and DESIGN say."""
    fingerprint = re.search(
        r"fingerprint (SHA256:\S+)", (server.data_dir / "server.log").read_text()
    )
    assert fingerprint
    profile = tmp_path / "one.json"
    profile.write_text(json.dumps(PROFILE | {"devices": PROFILE["devices"][:1]}))

    logs: list[Any] = []

    def agent(data: str, token: str, pin: str) -> subprocess.Popen[str]:
        log = (tmp_path / f"{data}.log").open("w")
        logs.append(log)
        return subprocess.Popen(
            [
                *HWFLEET,
                "agent",
                "--controller",
                server.agent,
                "--simulate",
                str(profile),
                "--data-dir",
                str(tmp_path / data),
                "--enroll-token",
                token,
                "--controller-fingerprint",
                pin,
                "--no-discovery",
                "--mdp-listen",  # off: not 0.0.0.0:12345, which other tests' devices use
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )

    def token() -> str:
        return str(server.json("keys", "token")["token"])  # type: ignore[index]

    wrong_pin = "SHA256:" + ":".join(["00"] * 32)
    impostor_check = agent("wrong", token(), wrong_pin)
    try:
        wait_until(lambda: "fingerprint" in (tmp_path / "wrong.log").read_text())
        assert server.json("devices") == []  # refused before it sent the token
    finally:
        impostor_check.terminate()
        impostor_check.wait(15)
    pinned = agent("right", token(), fingerprint.group(1))
    try:
        wait_until(lambda: [d["state"] for d in server.json("devices")] == ["online"])  # type: ignore[union-attr]
    finally:
        pinned.terminate()
        pinned.wait(15)
        for log in logs:
            log.close()
