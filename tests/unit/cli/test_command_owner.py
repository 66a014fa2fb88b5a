"""A fast-path command line loads only its owner module: that module must hold the command.

``hwfleet devices`` builds an app from ``COMMAND_OWNER["devices"]`` alone; when a command
moves to another module and the map is not updated, the command vanishes. These tests fail
then, not an operator.
"""

from __future__ import annotations

import pytest
import typer
from typer.main import get_command

from hwfleet.cli.main import COMMAND_MODULES, COMMAND_OWNER, build_app


def _commands(app: typer.Typer) -> set[str]:
    group = get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    return set(group.commands)


@pytest.mark.parametrize("command", sorted(COMMAND_OWNER))
def test_the_owner_module_alone_provides_the_command(command: str) -> None:
    assert COMMAND_OWNER[command] in COMMAND_MODULES
    assert command in _commands(build_app(command))


def test_the_full_app_has_every_fast_path_command() -> None:
    assert set(COMMAND_OWNER) <= _commands(build_app(None))
