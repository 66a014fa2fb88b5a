"""The ``hwfleet`` entry point: registers every command group and reports errors as fixes."""

from __future__ import annotations

import importlib
import sys

import typer

from hwfleet import __version__
from hwfleet.cli.client import CliError

#: The modules under hwfleet.cli that each register commands, in help order.
COMMAND_MODULES = [
    "server", "agent", "sim", "demo", "listing", "fleet", "device", "tasks", "scan", "mes_sim",
    "keys", "discover", "targets", "mdp", "bootstrap", "images", "graphs", "boot", "oob",
]  # fmt: skip

#: Long-running commands build only their own command: an idle agent on a small device should
#: not hold every operator command (and what they import) in memory.
STANDALONE = {"agent", "sim", "server"}
#: Operator commands whose module is known without importing them all: such a command line
#: loads only its own module, so `hwfleet devices --json` starts in a fraction (issue 18).
COMMAND_OWNER = {"devices": "listing", "ping": "fleet", "run": "fleet"}


def _register(app: typer.Typer, name: str) -> None:
    importlib.import_module(f"hwfleet.cli.{name}").register(app)


def build_app(only: str | None = None) -> typer.Typer:
    app = typer.Typer(
        name="hwfleet",
        help="Control plane for fleets of physical machines.",
        no_args_is_help=True,
        # Tab completes commands, targets (names and uuid prefixes from the controller, with
        # a short timeout) and method names: hwfleet --install-completion.
        add_completion=True,
        pretty_exceptions_enable=False,
    )

    @app.callback(invoke_without_command=True)
    def root(
        version: bool = typer.Option(False, "--version", help="print the version and exit"),
    ) -> None:
        if version:
            typer.echo(__version__)
            raise typer.Exit()

    if only in STANDALONE:
        _register(app, only)
        return app
    if only in COMMAND_OWNER:
        _register(app, COMMAND_OWNER[only])
        return app
    for name in COMMAND_MODULES:
        _register(app, name)
    return app


def main() -> None:
    try:
        # One program name however it is started (python -m hwfleet too): shell completion
        # answers to _HWFLEET_COMPLETE, and usage lines say "hwfleet".
        build_app(sys.argv[1] if len(sys.argv) > 1 else None)(prog_name="hwfleet")
    except CliError as exc:
        sys.stderr.write(f"hwfleet: {exc}\n")
        sys.exit(1)
