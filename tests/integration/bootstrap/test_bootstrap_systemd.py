"""``hwfleet bootstrap`` against a Debian machine whose PID 1 is a live systemd.

The machine is a debootstrapped Debian (systemd, openssh-server, python3-venv; cached,
tests/integration/bootstrap/debian_root.py) booted with ``systemd-nspawn --boot``
(systemd_target.py). Bootstrap detects systemd, installs the unit, and systemd starts
the agent, which enrols with its single-use token and answers diagnostics with the key
bootstrap took into custody. Killing the agent's main process makes systemd start it
again (``Restart=always``), and a second bootstrap changes nothing and says so. Prints the
figures (build or cache, boot, bootstrap, restart).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import pytest
from tests.integration.bootstrap.debian_root import debian_root
from tests.integration.bootstrap.systemd_target import Machine, booted, ssh
from tests.integration.bootstrap.test_bootstrap_sshd import cli
from tests.integration.controller.conftest import controller_settings, running_controller

pytestmark = pytest.mark.slow

UNIT = "hwfleet-agent"
#: RestartSec is 5 s; systemd under load, and the agent's start, get the rest.
RESTART_DEADLINE = 90.0


def udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def show(machine: Machine, known: Path) -> dict[str, str]:
    props = "ActiveState,SubState,MainPID,NRestarts,UnitFileState,FragmentPath,Restart"
    out = ssh(machine, known, f"systemctl show -p {props} {UNIT}")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


async def restarted(machine: Machine, known: Path, old_pid: str) -> dict[str, str]:
    """The unit's state once systemd runs a new main process (polled: another machine)."""
    end = time.monotonic() + RESTART_DEADLINE
    while time.monotonic() < end:
        state = await asyncio.to_thread(show, machine, known)
        if state["MainPID"] not in ("0", old_pid) and state["ActiveState"] == "active":
            return state
        await asyncio.sleep(0.5)
    raise AssertionError(f"systemd did not restart the agent within {RESTART_DEADLINE:g} s")


async def test_bootstrap_under_live_systemd(tmp_path: Path, wheels: Path) -> None:
    started = time.monotonic()
    root = await asyncio.to_thread(debian_root)
    root_seconds = time.monotonic() - started
    with booted(root, tmp_path / "machine") as machine:
        settings = controller_settings(tmp_path / "ctl", enroll_password="")
        known = Path(settings.data_dir) / "bootstrap_known_hosts"
        async with running_controller(settings) as ctl:
            gw_host, gw_port = ctl.gateway.address
            mdp_port = udp_port()
            argv = [
                "bootstrap", "127.0.0.1", "--port", str(machine.port),
                "--identity", str(machine.client_key), "--controller", f"{gw_host}:{gw_port}",
                "--wheelhouse", str(wheels),
                "--agent-setting", f"mdp_listen=127.0.0.1:{mdp_port}",
                "--agent-setting", "discovery=false",
                "--api", ctl.api_url, "--data-dir", settings.data_dir,
                "--enroll-timeout", "300", "--json",
            ]  # fmt: skip
            code, first, err = await cli(*argv, timeout=1200)
            assert code == 0, json.dumps(first) + err
            [result] = first
            assert result["status"] == "installed", result
            assert result["init"] == "systemd" and result["distro"].startswith("debian")
            assert result["mdp_key"] == "recorded"

            # systemd runs it: enabled, active, from the unit bootstrap wrote, Restart=always.
            state = show(machine, known)
            assert state["UnitFileState"] == "enabled", state
            assert state["ActiveState"] == "active" and state["SubState"] == "running", state
            assert state["FragmentPath"] == f"/etc/systemd/system/{UNIT}.service"
            assert state["Restart"] == "always" and state["MainPID"] != "0"
            cmdline = ssh(machine, known, f"tr '\\0' ' ' < /proc/{state['MainPID']}/cmdline")
            # `hwfleet agent` execs its lean agent process under the same pid (docs/scale.md),
            # with -OO (no docstrings) and -X no_debug_ranges (no column tables).
            assert cmdline.startswith(
                "/opt/hwfleet/venv/bin/python -OO -X no_debug_ranges "
                "-m hwfleet.cli.agent_boot --settings-fd"
            ), cmdline

            async with ctl.store.tx() as tx:
                device = await tx.devices.get(result["uuid"])
            assert device is not None
            call = ["mdp", "call", "127.0.0.1", "load_and_memory", "--port", str(mdp_port),
                    "--data-dir", settings.data_dir, "--json"]  # fmt: skip
            code, reply, err = await cli(*call, timeout=60)
            assert code == 0 and reply["status"] is True, err
            # Debian 12 keeps no /var/log/syslog without rsyslog: the default reads the journal.
            tail = [*call[:3], "log_tail", "--arg", "lines=5", *call[4:]]
            code, reply, err = await cli(*tail, timeout=60)
            assert code == 0, json.dumps(reply) + err
            [entry] = reply["operations"]
            assert entry["result"]["path"] == "journal" and entry["result"]["lines"], entry

            # Restart=always: the agent killed outright comes back under systemd.
            killed_at = time.monotonic()
            ssh(machine, known, f"kill -KILL {state['MainPID']}")
            again = await restarted(machine, known, state["MainPID"])
            restart_seconds = time.monotonic() - killed_at
            assert int(again["NRestarts"]) >= 1, again
            code, reply, err = await cli(*call, timeout=60)  # the same key, the same agent
            assert code == 0 and reply["status"] is True, err

            before = ssh(machine, known, "stat -c %Y /opt/hwfleet/installed.json")
            code, second, err = await cli(*argv, timeout=600)
            assert code == 0, json.dumps(second) + err
            assert second[0]["status"] == "unchanged" and second[0]["uuid"] == result["uuid"]
            after = show(machine, known)
            assert after["MainPID"] == again["MainPID"], "an unchanged run restarted nothing"
            assert ssh(machine, known, "stat -c %Y /opt/hwfleet/installed.json") == before
    print(
        f"\nsystemd target: root filesystem {root_seconds:.1f} s (cached when ~0), boot "
        f"{machine.boot_seconds:.1f} s, bootstrap {result['seconds']} s, second run "
        f"{second[0]['seconds']} s, restart after kill {restart_seconds:.1f} s"
    )
