"""``hwfleet agent``: the agent on a device (or one simulated device with --simulate)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hwfleet.cli.client import CliError

Opt = typer.Option


def register(app: typer.Typer) -> None:
    @app.command("agent")
    def agent(
        controller: Annotated[str, Opt(help="controller gateway H:P")],
        data_dir: Annotated[str | None, Opt(help="agent state (identity, keys)")] = None,
        simulate: Annotated[
            str | None, Opt(help="profile file: report what it says instead of this machine")
        ] = None,
        device_index: Annotated[int, Opt(help="which device of the profile to be")] = 0,
        transport: Annotated[str | None, Opt(help="stream | amqp")] = None,
        bus: Annotated[str | None, Opt(help="bus URL for --transport amqp")] = None,
        enroll_password: Annotated[
            str | None, Opt(help="first contact (or HWFLEET_ENROLL_PASSWORD)", show_default=False)
        ] = None,
        enroll_token: Annotated[
            str | None, Opt(help="single-use token from `hwfleet keys token`", show_default=False)
        ] = None,
        controller_fingerprint: Annotated[
            str | None, Opt(help="pin this controller CA (SHA256:…) on first contact")
        ] = None,
        insecure: Annotated[bool | None, Opt(help="plain TCP (unsafe)")] = None,
        discovery: Annotated[
            bool | None, Opt(help="answer discovery queries (UDP 1901, group 239.255.255.250)")
        ] = None,
        discovery_port: Annotated[int | None, Opt(help="discovery UDP port")] = None,
        discovery_interface: Annotated[str | None, Opt(help="join the group on this NIC")] = None,
        dnssd: Annotated[bool | None, Opt(help="advertise _hwfleet._tcp over DNS-SD")] = None,
        admin_listen: Annotated[
            str | None,
            Opt(help="serve the device admin listener on H:P (trusted keys, device password)"),
        ] = None,
        mdp_listen: Annotated[
            str | None, Opt(help="diagnostics endpoint UDP H:P (default 0.0.0.0:12345; '' off)")
        ] = None,
        mdp_legacy_keys: Annotated[
            bool | None, Opt(help="also accept MDP 1.0 (key inside the message; unsafe)")
        ] = None,
        mdp_report_to: Annotated[
            str | None, Opt(help="send diagnostics reports to the monitoring host H:P")
        ] = None,
        mdp_report_interval: Annotated[str | None, Opt(help="seconds between reports")] = None,
        mdp_report_operations: Annotated[
            str | None, Opt(help="operations each report runs, comma-separated")
        ] = None,
        mdp_cluster_ssh_key: Annotated[
            str | None, Opt(help="SSH key for cluster folder sync (rsync over SSH)")
        ] = None,
        mdp_cluster_known_hosts: Annotated[
            str | None, Opt(help="known_hosts of the other cluster members")
        ] = None,
        mdp_cluster_user: Annotated[str | None, Opt(help="SSH user on the other members")] = None,
        mdp_cluster_interval: Annotated[str | None, Opt(help="seconds between sync rounds")] = None,
        mdp_cluster_sync: Annotated[
            bool | None, Opt(help="take part in cluster folder sync (on)")
        ] = None,
        mdp_cluster_authorized_keys: Annotated[
            str | None, Opt(help="where the other members' keys go (~/.ssh/authorized_keys)")
        ] = None,
        mdp_cluster_host_key: Annotated[
            str | None, Opt(help="this machine's sshd host public key (/etc/ssh's)")
        ] = None,
        image_cache: Annotated[
            str | None, Opt(help="where standby.cache_images keeps images (DATA_DIR/image-cache)")
        ] = None,
        cache_budget: Annotated[
            str | None, Opt(help="most the image cache may hold, e.g. 20G (free space - 1G)")
        ] = None,
        image_server: Annotated[
            str | None, Opt(help="controller image server H:P (controller host, port + 2)")
        ] = None,
        log_level: Annotated[str | None, Opt()] = None,
        config: Annotated[
            Path | None, Opt(help="TOML file with an \\[agent] table (or HWFLEET_CONFIG)")
        ] = None,
    ) -> None:
        """Run an agent: connect to the controller and answer its commands."""
        # Every option but these two is a setting: derived, so a new flag cannot be forgotten.
        flags = {k: v for k, v in locals().items() if k not in ("config", "device_index")}
        from hwfleet.cli.agent_process import Handoff, become_agent, run_agent_process
        from hwfleet.settings import AgentSettings, SettingsError, load

        origins: dict[str, str] = {}
        try:
            settings = load(AgentSettings, flags=flags, config_file=config, origins=origins)
        except SettingsError as exc:
            raise CliError(str(exc)) from None
        handoff = Handoff(settings=settings, device_index=device_index, origins=origins)
        # The parser has done its work: the agent runs without it in memory (issue 18).
        become_agent(handoff)
        run_agent_process(handoff)
