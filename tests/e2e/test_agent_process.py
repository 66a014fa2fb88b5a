"""`hwfleet agent` parses its options, then runs in a process image without the parser."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hwfleet.cli.agent_process import Handoff, read_handoff
from hwfleet.cli.client import CliError
from hwfleet.settings import AgentSettings
from tests.e2e.conftest import HWFLEET, PASSWORD, Server, wait_until


def test_the_agent_becomes_its_own_process_and_keeps_its_secret_out_of_sight(
    server: Server, tmp_path: Path
) -> None:
    log = (tmp_path / "agent.log").open("w")
    agent = subprocess.Popen(
        [
            *HWFLEET,
            "agent",
            "--controller",
            server.agent,
            "--data-dir",
            str(tmp_path / "agent"),
            "--no-discovery",
            "--mdp-listen",
            "",
            "--log-level",
            "info",
        ],
        # The secret comes from the environment, as it would from a unit file; the exec'd
        # process gets it in the settings file, not in argv.
        env={**server.env(), "HWFLEET_ENROLL_PASSWORD": PASSWORD},
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
    )
    try:
        wait_until(lambda: [d["state"] for d in server.json("devices")] == ["online"])  # type: ignore[union-attr]
        # The same pid (systemd, scripts), now running hwfleet.cli.agent_process.
        argv = Path(f"/proc/{agent.pid}/cmdline").read_bytes().split(b"\0")
        assert b"hwfleet.cli.agent_process" in argv and b"--settings-fd" in argv
        assert PASSWORD.encode() not in b" ".join(argv)
        # A second agent on the same data dir would be the same device twice: refused.
        second = subprocess.run(
            [*HWFLEET, "agent", "--controller", server.agent, "--data-dir",
             str(tmp_path / "agent"), "--no-discovery", "--mdp-listen", ""],
            env={**server.env(), "HWFLEET_ENROLL_PASSWORD": PASSWORD},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert second.returncode == 1, second.stderr
        assert f"another hwfleet agent (pid {agent.pid}) is running on" in second.stderr
        assert [d["state"] for d in server.json("devices")] == ["online"]  # type: ignore[union-attr]
        agent.terminate()
        assert agent.wait(15) == 0
        wait_until(lambda: [d["state"] for d in server.json("devices")] == ["offline"])  # type: ignore[union-attr]
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(15)
        log.close()


def test_the_agent_process_refuses_to_start_without_its_settings(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="started by `hwfleet agent`"):
        read_handoff([])
    with pytest.raises(CliError, match="could not read the agent's settings"):
        read_handoff(["--settings-fd", "987"])
    done = subprocess.run(
        [*HWFLEET[:-2], "-m", "hwfleet.cli.agent_process"], capture_output=True, text=True
    )
    assert done.returncode == 1 and done.stderr.startswith("hwfleet: ")
    assert Handoff(settings=AgentSettings(data_dir=str(tmp_path))).device_index == 0
