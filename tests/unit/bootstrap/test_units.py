"""The service definitions bootstrap writes: the systemd unit passes ``systemd-analyze verify``;
the sysvinit script is valid sh; host-key records are found again."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import service_missing

from hwfleet.bootstrap.hostkeys import HostKeyPolicy, recorded
from hwfleet.bootstrap.units import Layout, agent_config, systemd_unit, sysvinit_script


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        service_missing("systemd-analyze (package systemd) checks the unit")
    layout = Layout(str(tmp_path))
    exe = Path(layout.venv) / "bin" / "hwfleet"
    exe.parent.mkdir(parents=True)
    exe.symlink_to(Path(sys.executable).with_name("hwfleet"))
    unit = Path(layout.unit_path)
    unit.parent.mkdir(parents=True)
    text = systemd_unit(layout, "10.0.0.1:7800")
    unit.write_text(text)
    assert "Restart=always" in text and "--controller 10.0.0.1:7800" in text
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    problems = [line for line in done.stderr.splitlines() if str(unit) in line]
    assert done.returncode == 0 and not problems, done.stderr


def test_sysvinit_script_is_valid_sh(tmp_path: Path) -> None:
    script = tmp_path / "hwfleet-agent"
    script.write_text(sysvinit_script(Layout(str(tmp_path)), "10.0.0.1:7800"))
    subprocess.run(["sh", "-n", str(script)], check=True, timeout=10)
    os.chmod(script, 0o700)
    usage = subprocess.run([str(script), "bogus"], capture_output=True, text=True, timeout=10)
    assert usage.returncode == 2 and "usage" in usage.stderr


def test_agent_config_quotes_values() -> None:
    text = agent_config("h:1", {"log_level": 'a"b', "discovery": False, "n": 3}, Layout())
    assert 'log_level = "a\\"b"' in text and "discovery = false" in text and "n = 3" in text
    import tomllib

    assert tomllib.loads(text)["agent"]["data_dir"] == "/var/lib/hwfleet"


@pytest.mark.parametrize(("port", "name"), [(22, "example"), (2222, "[example]:2222")])
def test_first_use_keys_are_recorded_and_found(tmp_path: Path, port: int, name: str) -> None:
    import asyncssh

    policy = HostKeyPolicy(str(tmp_path))
    assert policy.for_host("example", port) == (None, True)
    key = asyncssh.generate_private_key("ssh-ed25519")
    fingerprint = policy.remember("example", port, key)
    assert fingerprint.startswith("SHA256:")
    assert recorded(policy.tofu_path(), "example", port)
    assert policy.tofu_path().read_text().startswith(name + " ssh-ed25519 ")
    assert policy.for_host("example", port) == (str(policy.tofu_path()), False)
    assert HostKeyPolicy(str(tmp_path), "/etc/kh").for_host("x", 22) == ("/etc/kh", False)
