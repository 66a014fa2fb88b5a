"""``hwfleet mes-sim --listen H:P --profile FILE [--fail-rate F]``: a MES for tests and demos.

Serves the four seed-000 endpoints from a simulation profile (see
:mod:`hwfleet.sim.mes`), plus ``GET /_received`` and ``POST /_faults`` for tests.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from hwfleet.cli.client import CliError


def register(app: typer.Typer) -> None:
    @app.command("mes-sim")
    def mes_sim(
        profile: Annotated[str, typer.Option(help="simulation profile (DESIGN §8) to serve")],
        listen: Annotated[str, typer.Option(help="HOST:PORT to listen on")] = "127.0.0.1:8790",
        fail_rate: Annotated[
            float, typer.Option(help="fraction of requests answered 500", min=0.0, max=1.0)
        ] = 0.0,
        log_level: Annotated[str, typer.Option(help="log level")] = "info",
    ) -> None:
        """Run a MES simulator (deviceInfo, deviceScan, pair, notifications)."""
        from hwfleet.cli.common import run, setup_logging, until_signalled
        from hwfleet.sim.mes import MesProfileError, MesSimulator, load_profile, serve
        from hwfleet.types import parse_host_port

        setup_logging(log_level)
        try:
            host, port = parse_host_port(listen)
            sim = MesSimulator.from_profile(load_profile(profile), fail_rate=fail_rate)
        except (ValueError, MesProfileError) as exc:
            raise CliError(str(exc)) from None

        async def main() -> None:
            async def work(stop: asyncio.Event) -> None:
                try:
                    async with serve(sim, host, port) as url:
                        typer.echo(f"mes-sim listening on {url} ({len(sim.records)} serials)")
                        await stop.wait()
                except OSError as exc:
                    raise CliError(f"cannot listen on {listen}: {exc.strerror or exc}") from None

            await until_signalled(work)

        run(main())
