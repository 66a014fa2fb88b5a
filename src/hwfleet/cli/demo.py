"""``hwfleet demo``: everything embedded on this machine, in one process."""

from __future__ import annotations

from typing import Annotated

import typer

Opt = typer.Option


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        devices: Annotated[int, Opt(help="simulated devices", min=1, max=5000)] = 8,
        once: Annotated[bool, Opt(help="run the demo once and exit")] = False,
        seed: Annotated[int, Opt(help="seed for the simulated devices")] = 7,
        data_dir: Annotated[str | None, Opt(help="keep state here (default: a temp dir)")] = None,
        api_listen: Annotated[str, Opt(help="REST API H:P")] = "127.0.0.1:8780",
    ) -> None:
        """Controller + MES simulator + simulated devices: connect, ping, scan, summarise."""
        from hwfleet.cli.client import CliError
        from hwfleet.cli.common import run, setup_logging, until_signalled
        from hwfleet.cli.demo_session import Demo
        from hwfleet.types import parse_host_port

        try:
            parse_host_port(api_listen, allow_any_port=True)
        except ValueError as exc:
            raise CliError(f"--api-listen: {exc}") from None

        setup_logging("warning")
        runner = Demo(
            devices=devices,
            seed=seed,
            data_dir=data_dir,
            api_listen="127.0.0.1:0" if once else api_listen,
        )
        code = run(until_signalled(lambda stop: runner.run(stop, once=once)))
        if runner.exit_code:
            raise typer.Exit(runner.exit_code)
        del code
