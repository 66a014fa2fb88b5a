"""``hwfleet sim``: many simulated agents in one process."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from hwfleet.cli.client import CliError

Opt = typer.Option


def register(app: typer.Typer) -> None:
    @app.command("sim")
    def sim(
        controller: Annotated[
            str,
            Opt(
                help="controller gateway H:P (stream; with amqp: enroll there and get each "
                "device its own bus user)"
            ),
        ] = "",
        devices: Annotated[int | None, Opt(help="generate N devices", min=1, max=65000)] = None,
        seed: Annotated[int, Opt(help="seed for generated devices")] = 0,
        profile: Annotated[str | None, Opt(help="profile file (DESIGN §8)")] = None,
        data_dir: Annotated[str | None, Opt(help="state for the simulated devices")] = None,
        transport: Annotated[str, Opt(help="stream | amqp")] = "stream",
        bus: Annotated[
            str | None, Opt(help="bus URL for --transport amqp", envvar="HWFLEET_BUS")
        ] = None,
        address_base: Annotated[
            str | None,
            Opt(
                help="loopback address of device 0 (default 127.1.0.1, or the next free block "
                "127.2.0.1, 127.3.0.1, … when another simulator holds it)",
                show_default=False,
            ),
        ] = None,
        discovery_port: Annotated[int, Opt(help="UDP port of each device's responder")] = 1901,
        discovery: Annotated[bool, Opt(help="answer discovery on each device's address")] = True,
        enroll_password: Annotated[
            str | None, Opt(envvar="HWFLEET_ENROLL_PASSWORD", show_default=False)
        ] = None,
        mdp: Annotated[bool, Opt(help="diagnostics endpoint on each device's address")] = True,
        mdp_port: Annotated[int, Opt(help="UDP port of each diagnostics endpoint")] = 12345,
        mdp_legacy_keys: Annotated[
            bool, Opt(help="also accept MDP 1.0 (key inside the message; unsafe)")
        ] = False,
        mdp_report_to: Annotated[
            str, Opt(help="each device reports diagnostics to the monitoring host H:P")
        ] = "",
        mdp_report_interval: Annotated[
            float, Opt(help="seconds between a device's reports", min=0.1)
        ] = 60.0,
        mdp_report_operations: Annotated[
            str, Opt(help="operations each report runs, comma-separated")
        ] = "load_and_memory,disk_health",
        controller_fingerprint: Annotated[str, Opt(help="pin this controller CA")] = "",
        insecure: Annotated[bool, Opt(help="plain TCP, no enrollment (unsafe)")] = False,
        log_level: Annotated[str, Opt()] = "warning",
    ) -> None:
        """Run simulated devices that report exactly what their profile says."""
        from hwfleet.cli.common import run, setup_logging, until_signalled
        from hwfleet.settings import default_data_dir
        from hwfleet.sim.addresses import (
            DEFAULT_ADDRESS_BASE,
            AddressesTakenError,
            pick_address_base,
        )
        from hwfleet.sim.fleet import FleetOptions, SimFleet
        from hwfleet.sim.profiles import ProfileError, generate, load_profile
        from hwfleet.types import parse_host_port

        if (devices is None) == (profile is None):
            raise CliError("give either --devices N or --profile FILE")
        if transport not in ("stream", "amqp"):
            raise CliError(f"--transport must be stream or amqp, not {transport!r}")
        if transport == "stream" and not controller:
            raise CliError("--transport stream needs --controller H:P")
        if transport == "amqp" and not bus:
            raise CliError("--transport amqp needs --bus amqp://user:password@host/")
        if mdp_report_to and not mdp:
            raise CliError("--mdp-report-to needs the diagnostics endpoints (drop --no-mdp)")
        try:
            if mdp_report_to:
                parse_host_port(mdp_report_to)
        except ValueError as exc:
            raise CliError(f"--mdp-report-to: {exc}") from None
        try:
            host, port = parse_host_port(controller) if controller else ("", 0)
            fleet_profile = load_profile(profile) if profile else generate(devices or 0, seed)
        except (ValueError, ProfileError) as exc:
            raise CliError(str(exc)) from None
        base = address_base or DEFAULT_ADDRESS_BASE
        if discovery:
            try:
                chosen = pick_address_base(
                    len(fleet_profile.devices), discovery_port, base, move=address_base is None
                )
            except ValueError as exc:
                raise CliError(str(exc)) from None
            if chosen != base:
                typer.echo(
                    f"hwfleet sim: UDP {base}:{discovery_port} is taken (another hwfleet sim?); "
                    f"device 0 uses {chosen} instead (probe it with hwfleet discover --probe "
                    f"{chosen.rpartition('.')[0]}.0/24; or give --address-base)",
                    err=True,
                )
            base = chosen
        # AMQP with a controller to enroll at: every device gets its own bus user.
        own_users = transport == "amqp" and bool(controller) and not insecure
        options = FleetOptions(
            seed=seed,
            address_base=base,
            data_dir=str(Path(data_dir or default_data_dir()) / "sim"),
            enroll_password=enroll_password or "",
            insecure=insecure,
            controller_fingerprint=controller_fingerprint,
            discovery_port=discovery_port if discovery else None,
            bus_url=(bus or "") if own_users else "",
            mdp_port=mdp_port if mdp else None,
            mdp_legacy_keys=mdp_legacy_keys,
            mdp_report_to=mdp_report_to,
            mdp_report_interval=mdp_report_interval,
            mdp_report_operations=tuple(
                n.strip() for n in mdp_report_operations.split(",") if n.strip()
            ),
        )
        setup_logging(log_level)

        async def main(stop: asyncio.Event) -> None:
            shared_bus = None
            if transport == "amqp" and not own_users:
                from hwfleet.bus import open_bus

                shared_bus = open_bus(bus or "")
                await shared_bus.start()
            try:
                fleet = SimFleet(fleet_profile, host, port, bus=shared_bus, options=options)
            except ValueError as exc:
                raise CliError(str(exc)) from None
            try:
                await fleet.start()
            except AddressesTakenError as exc:  # another simulator won the race for the block
                await fleet.close()
                raise CliError(str(exc)) from None
            except OSError as exc:
                await fleet.close()
                raise CliError(f"could not start the simulated devices: {exc}") from None
            # Benchmarks time a storm from here: building the devices is the simulator's cost.
            typer.echo(f"{len(fleet.devices)} simulated devices started", err=True)
            try:
                connected = await fleet.wait_connected(timeout=60)
                where = controller or bus
                typer.echo(
                    f"{connected}/{len(fleet.devices)} simulated devices connected "
                    f"({transport}, {where})",
                    err=True,
                )
                await stop.wait()
            finally:
                await fleet.close()
                if shared_bus is not None:
                    await shared_bus.close()

        try:
            run(until_signalled(main))
        except (ValueError, ConnectionError) as exc:  # the bus URL, or the broker refusing us
            raise CliError(f"{exc} (--bus or HWFLEET_BUS)") from None
