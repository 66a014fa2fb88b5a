"""`hwfleet agent` parses its options, then runs in a process image without the parser."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from hwfleet.agent.compiled import STARTUP_MODULES
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
        # process gets it in the settings file, not in argv. Without a bytecode cache, the
        # agent imports its startup modules from the compiler helper's bundle.
        env={**server.env(), "HWFLEET_ENROLL_PASSWORD": PASSWORD, "PYTHONDONTWRITEBYTECODE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
    )
    try:
        wait_until(lambda: [d["state"] for d in server.json("devices")] == ["online"])  # type: ignore[union-attr]
        # The same pid (systemd, scripts), now running hwfleet.cli.agent_boot.
        argv = Path(f"/proc/{agent.pid}/cmdline").read_bytes().split(b"\0")
        assert b"hwfleet.cli.agent_boot" in argv and b"--settings-fd" in argv
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
        [*HWFLEET[:-2], "-m", "hwfleet.cli.agent_boot"], capture_output=True, text=True
    )
    assert done.returncode == 1 and done.stderr.startswith("hwfleet: ")
    assert Handoff(settings=AgentSettings(data_dir=str(tmp_path))).device_index == 0


#: What the agent process imports before the helper's modules (its __main__,
#: hwfleet.cli.agent_boot, is not in sys.modules under that name).
BEFORE_THE_BUNDLE = {
    "hwfleet",
    "hwfleet.agent",
    "hwfleet.agent.compiled",
    "hwfleet.agent.lean",
    "hwfleet.cli",
}
#: Found on PYTHONPATH by site at start: on SIGUSR2, the -OO process (the agent) writes the
#: hwfleet modules it has loaded. importlib.import_module (lazy exports, entry points)
#: passes by -X importtime, so sys.modules is what is read.
SITECUSTOMIZE = """
import os, signal, sys
if sys.flags.optimize == 2:
    def _modules(*_):
        names = sorted(n for n in sys.modules if n == "hwfleet" or n.startswith("hwfleet."))
        path = os.environ["HWFLEET_TEST_MODULES"]
        with open(path + ".tmp", "w") as out:
            out.write("\\n".join(names))
        os.replace(path + ".tmp", path)
    signal.signal(signal.SIGUSR2, _modules)
"""


def loaded(agent: subprocess.Popen[bytes], out: Path) -> set[str]:
    """The hwfleet modules in the agent process's sys.modules now."""
    out.unlink(missing_ok=True)
    agent.send_signal(signal.SIGUSR2)
    wait_until(out.exists, timeout=10)
    return set(out.read_text().split())


def test_the_helper_compiles_exactly_the_modules_an_idle_agent_imports(
    server: Server, tmp_path: Path
) -> None:
    """STARTUP_MODULES (hwfleet.agent.compiled) against a real enrolled agent at idle, with
    discovery and MDP answered (on loopback) as by default: a module missing from the list
    would be compiled in the agent process, one too many would be loaded for nothing."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        discovery_port = str(probe.getsockname()[1])
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    modules = tmp_path / "modules.txt"
    command = [
        *HWFLEET, "agent", "--controller", server.agent, "--data-dir", str(tmp_path / "agent"),
        "--discovery-interface", "lo", "--discovery-port", discovery_port,
        "--mdp-listen", "127.0.0.1:0", "--log-level", "warning",
    ]  # fmt: skip
    env = {k: v for k, v in server.env().items() if k != "PYTHONDONTWRITEBYTECODE"}
    env |= {
        "HWFLEET_ENROLL_PASSWORD": PASSWORD,
        "PYTHONPYCACHEPREFIX": str(tmp_path / "pyc"),
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(tmp_path / "site"), env.get("PYTHONPATH")])
        ),
        "HWFLEET_TEST_MODULES": str(modules),
    }
    # The first start enrolls, and its helper writes the bytecode; the second imports as
    # Python does with every .pyc in place, which is what is compared.
    expected = set(STARTUP_MODULES) | BEFORE_THE_BUNDLE
    for run in ("enrolls", "measured"):
        agent = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            wait_until(lambda: [d["state"] for d in server.json("devices")] == ["online"])  # type: ignore[union-attr]
            if run == "measured":
                with contextlib.suppress(AssertionError):  # the comparison names what is missing
                    wait_until(lambda: loaded(agent, modules) >= expected)  # noqa: B023 - agent is this run's
                imported = loaded(agent, modules)
                assert (sorted(expected - imported), sorted(imported - expected)) == ([], [])
        finally:
            agent.terminate()
            _, stderr = agent.communicate(timeout=15)
        assert agent.returncode == 0, stderr
        wait_until(lambda: [d["state"] for d in server.json("devices")] == ["offline"])  # type: ignore[union-attr]
    # The helper wrote the -OO bytecode that the second start found.
    assert list((tmp_path / "pyc").rglob("stream.*.opt-2.pyc"))
