"""``hwfleet bootstrap`` against a real OpenSSH server with a fake root (no systemd can run
there, so the sysvinit path runs for real): install from pushed wheels, start, enrol with a
single-use token, take custody of the diagnostics key; the second run is ``unchanged``; a
changed host key is refused."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.integration.bootstrap.sshd import Sshd, free_port, keygen, sshd
from tests.integration.bootstrap.users import grant_sudo, login_user
from tests.integration.controller.conftest import controller_settings, running_controller

from hwfleet.bootstrap.units import Layout

pytestmark = pytest.mark.slow


async def cli(*args: str, timeout: float) -> tuple[int, Any, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hwfleet", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    async with asyncio.timeout(timeout):
        out, err = await proc.communicate()
    return proc.returncode or 0, json.loads(out or b"null"), err.decode()


def bootstrap_argv(
    ctl: Any, server: Sshd, user: str, fake_root: Path, wheels: Path, mdp_port: int
) -> list[str]:
    gw_host, gw_port = ctl.gateway.address
    return [
        "bootstrap", "127.0.0.1", "--port", str(server.port), "--user", user,
        "--identity", str(server.client_key), "--controller", f"{gw_host}:{gw_port}",
        "--root", str(fake_root), "--wheelhouse", str(wheels),
        "--agent-setting", f"mdp_listen=127.0.0.1:{mdp_port}",
        "--agent-setting", "discovery=false", "--api", ctl.api_url,
        "--data-dir", ctl.settings.data_dir, "--enroll-timeout", "120", "--json",
    ]  # fmt: skip


async def test_bootstrap_over_sshd(tmp_path: Path, wheels: Path, deadline: float) -> None:
    fake_root = tmp_path / "target"
    layout = Layout(str(fake_root))
    with sshd(tmp_path / "sshd", deadline) as server:
        settings = controller_settings(tmp_path / "ctl", enroll_password="")
        async with running_controller(settings) as ctl:
            mdp_port = free_port()
            argv = bootstrap_argv(ctl, server, "root", fake_root, wheels, mdp_port)
            try:
                code, first, err = await cli(*argv, timeout=600)
                assert code == 0, json.dumps(first) + err
                [result] = first
                assert result["status"] == "installed", result
                assert result["first_use"] is True and result["host_key"].startswith("SHA256:")
                assert result["init"] == "sysvinit" and result["mdp_key"] == "recorded"
                # The recorded fingerprint is the server's.
                known = (Path(settings.data_dir) / "bootstrap_known_hosts").read_text()
                assert (tmp_path / "sshd" / "host_key.pub").read_text().split()[1] in known
                # Enrolled with a token: the controller lists the device, online.
                async with ctl.store.tx() as tx:
                    device = await tx.devices.get(result["uuid"])
                assert device is not None
                config = Path(layout.config)
                assert oct(config.stat().st_mode & 0o777) == "0o600"
                script = Path(layout.init_script).read_text()
                assert "start-stop-daemon --start" in script
                # The diagnostics key the bootstrap recorded opens the endpoint.
                code, reply, err = await cli(
                    "mdp", "call", "127.0.0.1", "load_and_memory", "--port", str(mdp_port),
                    "--data-dir", settings.data_dir, "--json", timeout=60,
                )  # fmt: skip
                assert code == 0 and reply["status"] is True, err

                code, second, err = await cli(*argv, timeout=600)
                assert code == 0, err
                assert second[0]["status"] == "unchanged"
                assert second[0]["uuid"] == result["uuid"]
                assert "first_use" not in second[0]

                # A different host key on the same host:port is refused, not re-learned.
                other = tmp_path / "other_key"
                keygen(other)
                path = Path(settings.data_dir) / "bootstrap_known_hosts"
                name, *_ = path.read_text().split()
                path.write_text(f"{name} {(tmp_path / 'other_key.pub').read_text()}")
                code, third, err = await cli(*argv, timeout=120)
                assert code == 1
                assert third[0]["status"] == "failed"
                assert "host key refused" in third[0]["error"]
            finally:
                if Path(layout.init_script).exists():
                    subprocess.run([layout.init_script, "stop"], check=False, timeout=30)


async def test_bootstrap_as_a_sudo_user(tmp_path: Path, wheels: Path, deadline: float) -> None:
    """A non-root SSH user: refused with a clear reason until it has passwordless sudo, then
    everything runs through ``sudo -n`` and the wheels travel through its own staging dir."""
    fake_root = tmp_path / "target"
    layout = Layout(str(fake_root))
    with (
        sshd(tmp_path / "sshd", deadline) as server,
        login_user(Path(f"{server.client_key}.pub")) as (user, sudoers),
    ):
        settings = controller_settings(tmp_path / "ctl", enroll_password="")
        async with running_controller(settings) as ctl:
            argv = bootstrap_argv(ctl, server, user, fake_root, wheels, free_port())
            try:
                code, refused, err = await cli(*argv, timeout=120)
                assert code == 1, err
                assert "cannot become root with `sudo -n`" in refused[0]["error"]
                assert not fake_root.exists()  # nothing was done as the user either
                grant_sudo(user, sudoers)
                code, first, err = await cli(*argv, timeout=600)
                assert code == 0, json.dumps(first) + err
                assert first[0]["status"] == "installed" and first[0]["mdp_key"] == "recorded"
                for path in (layout.config, layout.init_script, f"{layout.wheels}"):
                    assert Path(path).stat().st_uid == 0, path  # written as root
                assert oct(Path(layout.config).stat().st_mode & 0o777) == "0o600"
                staged = subprocess.run(["find", "/tmp", "-maxdepth", "1", "-user", user],
                                        capture_output=True, text=True, check=True)  # fmt: skip
                assert staged.stdout == ""  # the staging dir went away
                code, second, err = await cli(*argv, timeout=600)
                assert code == 0 and second[0]["status"] == "unchanged", err
            finally:
                if Path(layout.init_script).exists():
                    subprocess.run([layout.init_script, "stop"], check=False, timeout=30)
