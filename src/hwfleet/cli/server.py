"""``hwfleet server``: the controller."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from hwfleet.cli.client import CliError
from hwfleet.cli.params import POSITIVE_DURATION

Opt = typer.Option


def register(app: typer.Typer) -> None:
    @app.command("server")
    def server(
        data_dir: Annotated[str | None, Opt(help="state: database, keys, token")] = None,
        agent_listen: Annotated[str | None, Opt(help="agent gateway H:P (0.0.0.0:7800)")] = None,
        api_listen: Annotated[str | None, Opt(help="REST API H:P (127.0.0.1:8780)")] = None,
        db: Annotated[
            str | None, Opt(help="database URL (default: SQLite in the data dir)")
        ] = None,
        bus: Annotated[str | None, Opt(help="bus URL: memory:// or amqp://…")] = None,
        bus_credentials: Annotated[
            str | None,
            Opt(
                help="per-device RabbitMQ users for AMQP agents: rabbitmqctl, or the management "
                "API URL http(s)://user:pass@host:15672 (user info optional; default: off, "
                "devices share the bus URL's credentials)",
                show_default=False,
            ),
        ] = None,
        mdp_report_listen: Annotated[
            str | None, Opt(help="receive machines' diagnostics reports on UDP H:P (off)")
        ] = None,
        mes: Annotated[str | None, Opt(help="MES base URL")] = None,
        mes_notify: Annotated[str | None, Opt(help="notifications URL")] = None,
        mes_get: Annotated[str | None, Opt(help="device-info URL")] = None,
        mes_scan: Annotated[str | None, Opt(help="deviceScan URL")] = None,
        mes_pair: Annotated[str | None, Opt(help="pair URL")] = None,
        enroll_password: Annotated[
            str | None,
            Opt(help="enrollment password (or HWFLEET_ENROLL_PASSWORD)", show_default=False),
        ] = None,
        scan_quiet_timeout: Annotated[
            float | None,
            Opt(parser=POSITIVE_DURATION, metavar="DURATION", help="time without a reply (10s)"),
        ] = None,
        scan_store_outage: Annotated[
            float | None,
            Opt(
                parser=POSITIVE_DURATION,
                metavar="DURATION",
                help="how long a scan waits out an unavailable database before failing (300s)",
            ),
        ] = None,
        mes_retry_for: Annotated[
            float | None,
            Opt(
                parser=POSITIVE_DURATION,
                metavar="DURATION",
                help="how long a MES lookup retries an unreachable MES (300s)",
            ),
        ] = None,
        scan_legacy: Annotated[
            str | None,
            Opt(help="on|off: scan unenrolled seed-000 reference devices as kind legacy (on)"),
        ] = None,
        scan_queue_quorum: Annotated[
            bool | None,
            Opt(help="declare hwinfo_queue as a quorum queue (reference devices cannot)"),
        ] = None,
        insecure: Annotated[bool | None, Opt(help="plain TCP on the agent port (unsafe)")] = None,
        manual_approval: Annotated[
            bool | None, Opt(help="hold enrollments without a secret for `hwfleet keys accept`")
        ] = None,
        enroll_password_per_source: Annotated[
            int | None, Opt(help="password enrollments per source per window (20)")
        ] = None,
        enroll_password_window: Annotated[
            float | None, Opt(help="that window, seconds (3600)")
        ] = None,
        enroll_password_fleet_limit: Annotated[
            int | None,
            Opt(help="no password enrollment past this many devices; 0: no limit (10000)"),
        ] = None,
        anonymous_links_per_source: Annotated[
            int | None, Opt(help="open links without a certificate per source (16)")
        ] = None,
        anonymous_links: Annotated[
            int | None, Opt(help="open links without a certificate in all (512)")
        ] = None,
        discovery_interface: Annotated[
            str | None, Opt(help="multicast discovery on this interface (default: none)")
        ] = None,
        discovery_port: Annotated[
            int | None, Opt(help="devices' discovery UDP port (1901)")
        ] = None,
        image_listen: Annotated[
            str | None,
            Opt(help="serve images to enrolled devices (mTLS) on H:P (gateway port + 2), or off"),
        ] = None,
        image_dir: Annotated[
            str | None, Opt(help="where uploaded images are kept (DATA_DIR/images)")
        ] = None,
        # --- boot ---
        boot_interface: Annotated[
            str | None, Opt(help="serve DHCP (Kea), TFTP and HTTP boot on this interface")
        ] = None,
        dhcp_range: Annotated[
            str | None, Opt(help="DHCP pool A-B on the boot interface's subnet")
        ] = None,
        boot_server_ip: Annotated[
            str | None, Opt(help="this server's boot-network address (default: the interface's)")
        ] = None,
        boot_http_url: Annotated[
            str | None, Opt(help="base URL iPXE fetches scripts from (http://IP:API port)")
        ] = None,
        boot_tftp_listen: Annotated[
            str | None, Opt(help="TFTP H:P (<boot server ip>:69), or off")
        ] = None,
        boot_kea_launcher: Annotated[
            str | None, Opt(help="words before kea-dhcp4, e.g. 'ip netns exec NS'")
        ] = None,
        dhcp_proxy: Annotated[
            bool | None,
            Opt(help="proxyDHCP: another DHCP server gives addresses, hwfleet only boot files"),
        ] = None,
        # --- graphs ---
        graph_lease: Annotated[
            float | None,
            Opt(
                parser=POSITIVE_DURATION,
                metavar="DURATION",
                help="a graph task's lease: another controller takes it this long after its "
                "runner's last heartbeat (5s)",
            ),
        ] = None,
        graph_heartbeat: Annotated[
            float | None,
            Opt(
                parser=POSITIVE_DURATION,
                metavar="DURATION",
                help="how often leases are renewed and cancels noticed; below the lease (1s)",
            ),
        ] = None,
        graph_max_in_flight: Annotated[
            int | None, Opt(min=1, help="graph tasks this controller runs at once (100)")
        ] = None,
        graph_task_timeout: Annotated[
            float | None,
            Opt(
                parser=POSITIVE_DURATION,
                metavar="DURATION",
                help="a graph task's timeout when its definition gives none (1h)",
            ),
        ] = None,
        # --- cli: history retention ---
        retention_events_days: Annotated[
            float | None, Opt(help="prune events older than this many days; 0: keep (30)")
        ] = None,
        retention_tasks_days: Annotated[
            float | None, Opt(help="prune finished tasks older than this many days; 0: keep (30)")
        ] = None,
        retention_interval: Annotated[
            float | None,
            Opt(parser=POSITIVE_DURATION, metavar="DURATION", help="how often to prune (1h)"),
        ] = None,
        log_level: Annotated[str | None, Opt(help="debug|info|warning|error")] = None,
        config: Annotated[
            Path | None, Opt(help="TOML file with a \\[server] table (or HWFLEET_CONFIG)")
        ] = None,
    ) -> None:
        """Run the controller: agent gateway, REST API, scans, tasks."""
        flags = {k: v for k, v in locals().items() if k != "config"}
        from hwfleet.cli.common import run, setup_logging, until_signalled, with_source
        from hwfleet.controller.app import Controller
        from hwfleet.settings import ServerSettings, SettingsError, load
        from hwfleet.store.errors import StoreUnavailableError

        origins: dict[str, str] = {}
        try:
            settings = load(ServerSettings, flags=flags, config_file=config, origins=origins)
        except SettingsError as exc:
            raise CliError(str(exc)) from None
        if settings.graph_heartbeat >= settings.graph_lease:
            # Leases would lapse between renewals: other replicas would take running tasks.
            raise CliError(
                f"--graph-heartbeat ({settings.graph_heartbeat:g}s) must be shorter than "
                f"--graph-lease ({settings.graph_lease:g}s)"
            )
        setup_logging(settings.log_level)

        async def main(stop: asyncio.Event) -> None:
            from hwfleet.controller.heap import collect_periodically, start_tenuring

            # This process is the controller and nothing else: its links are long-lived.
            start_tenuring()
            collecting = asyncio.create_task(collect_periodically())
            controller = Controller(settings)
            try:
                await controller.start()
                host, port = controller.gateway.address
                typer.echo(
                    f"hwfleet controller: agents on {host}:{port}, API {controller.api_url}",
                    err=True,
                )
                await stop.wait()
            finally:
                collecting.cancel()
                await controller.close()

        # Start-up failures an operator fixes by changing a setting: one line, no traceback.
        try:
            run(until_signalled(main))
        except SettingsError as exc:
            raise CliError(with_source(str(exc), exc.setting, origins)) from None
        except StoreUnavailableError as exc:
            raise CliError(with_source(str(exc), "db", origins)) from None
        except ConnectionError as exc:  # the broker (BusUnavailableError) refused or is unreachable
            raise CliError(with_source(str(exc), "bus", origins)) from None
        except ValueError as exc:  # a value the checks let through, e.g. an empty bus URL
            raise CliError(str(exc)) from None
