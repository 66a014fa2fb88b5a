"""A third-party wheel extends the agent through entry points, without touching hwfleet.

The test builds a real distribution (pyproject + module) in tmp_path, installs
it with pip (the wheel built by hatchling, as hwfleet's own is) into a
``--target`` directory put on ``sys.path`` (its dist-info with it, so
importlib.metadata sees the entry points), and checks that the
agent's dispatcher and command registry use it — and that its broken siblings
are logged and skipped instead of stopping the agent.
"""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.agent.agent_kit import call

from hwfleet.agent.hardware import default_dispatcher
from hwfleet.agent.identity import DeviceInfo
from hwfleet.agent.runtime import AgentRuntime

MODULE = '''
"""A vendor's hardware manager and command, as a third party would write them."""
from hwfleet.agent.hardware import HardwareManager, HardwareSupport
from hwfleet.protocol.inventory import Dmi


class AcmeManager(HardwareManager):
    name = "acme"

    def evaluate(self):
        return HardwareSupport.MAINLINE

    def get_dmi(self):
        return Dmi(product_name="Acme Rack 9000", product_serial="ACME-42")


class BrokenManager(HardwareManager):
    def __init__(self):
        raise OSError("the vendor tool is missing")

    def evaluate(self):
        return HardwareSupport.SERVICE_PROVIDER


async def blink(rt, params):
    return {"blinked": params.get("times", 1)}


def register(registry):
    registry.add("acme.blink", blink)


def register_badly(registry):
    raise RuntimeError("half-written plugin")
'''

PYPROJECT = """
[build-system]
requires = ["hatchling>=1.25"]
build-backend = "hatchling.build"

[project]
name = "hwfleet-acme-plugin"
version = "1.0"

[tool.hatch.build.targets.wheel]
only-include = ["hwfleet_acme.py"]

[project.entry-points."hwfleet.hardware_managers"]
acme = "hwfleet_acme:AcmeManager"
broken = "hwfleet_acme:BrokenManager"
missing = "hwfleet_acme_gone:Manager"

[project.entry-points."hwfleet.agent_commands"]
acme = "hwfleet_acme:register"
badly = "hwfleet_acme:register_badly"
"""


@pytest.fixture
def acme_installed(tmp_path: Path) -> Iterator[Path]:
    source, target = tmp_path / "src", tmp_path / "site"
    source.mkdir()
    (source / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (source / "hwfleet_acme.py").write_text(textwrap.dedent(MODULE))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        timeout=120,
    )
    assert list(target.glob("hwfleet_acme_plugin-1.0.dist-info"))
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        sys.modules.pop("hwfleet_acme", None)
        importlib.invalidate_caches()


async def test_an_installed_wheel_adds_a_manager_and_a_command(
    acme_installed: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hwfleet.agent.plugins")
    dispatcher = default_dispatcher()
    assert [m.name for m in dispatcher.managers] == ["acme", "sysfs"], "MAINLINE beats GENERIC"
    inventory = dispatcher.inventory()
    assert inventory.dmi is not None
    assert (inventory.dmi.product_name, inventory.dmi.product_serial) == (
        "Acme Rack 9000",
        "ACME-42",
    )
    assert inventory.memory.total_bytes > 0, "what acme does not implement, sysfs answers"

    info = DeviceInfo(
        uuid="00000000-0000-0000-0000-0000000000ac", serial="A1", name="a", model_id="m"
    )
    runtime = AgentRuntime(info, dispatcher)
    assert await call(runtime, "acme.blink", {"times": 3}) == {"blinked": 3}
    assert await call(runtime, "ping", {"n": 1}) == {"n": 1}, "hwfleet's own commands stay"

    skipped = "\n".join(r.getMessage() for r in caplog.records)
    assert "hardware manager broken" in skipped and "the vendor tool is missing" in skipped
    assert "plugin missing (hwfleet_acme_gone:Manager)" in skipped
    assert "agent commands badly" in skipped and "half-written plugin" in skipped


def test_without_the_wheel_only_hwfleets_own_managers_load() -> None:
    assert [m.name for m in default_dispatcher().managers] == ["sysfs"]
