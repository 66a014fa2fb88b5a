"""Configuration: one settings object per process, layered defaults < TOML < env < flags.

Both structs load through :func:`load`: a TOML file (``--config`` or
``HWFLEET_CONFIG``; table ``[server]`` or ``[agent]``), then ``HWFLEET_<FIELD>``
environment variables, then command-line flags. Errors name the setting,
where its bad value came from and how to set it; durations also take ``90s``,
``15m``, ``1h``, ``2d`` (:mod:`hwfleet.durations`). A key the file does not
know — at the top level or in either table — is refused, naming it and the file.

We validate with msgspec rather than pydantic-settings so that an agent stays
inside its memory budget (pydantic adds ~14 MB of RSS; DESIGN §9 deviation).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_type_hints

import msgspec

from hwfleet.durations import parse_duration
from hwfleet.errors import ConfigError
from hwfleet.types import DISCOVERY_GROUP, DISCOVERY_PORT, LINK_TIMEOUT, parse_host_port
from hwfleet.types import default_data_dir as default_data_dir  # its former home: re-exported

ENV_PREFIX = "HWFLEET_"
#: A duration in seconds: zero or less would spin a loop or time out at once.
Positive = Annotated[float, msgspec.Meta(gt=0)]
#: A count that must allow at least one.
AtLeastOne = Annotated[int, msgspec.Meta(ge=1)]
#: A limit where 0 means none.
ZeroOff = Annotated[int, msgspec.Meta(ge=0)]


class SettingsError(ConfigError, ValueError):
    """A setting is missing or wrong; the message says which and where from.

    ``setting`` names it when the problem showed only later (a port in use), so the
    command can add where the value came from.
    """

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class ServerSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``hwfleet server`` (and the controller half of ``demo``)."""

    data_dir: str = msgspec.field(default_factory=default_data_dir)
    agent_listen: str = "0.0.0.0:7800"
    api_listen: str = "127.0.0.1:8780"
    #: The largest REST request body, in bytes (413 above it; each route also has its own cap).
    api_max_body: Annotated[int, msgspec.Meta(gt=0)] = 2 * 1024 * 1024
    db: str = ""  # empty: SQLite in the data dir
    bus: str = "memory://"
    #: Per-device RabbitMQ users for AMQP agents: "" (off: devices use the bus URL's shared
    #: credentials), "rabbitmqctl" (broker on this machine) or the management API URL.
    bus_credentials: str = ""
    mes: str = ""  # base URL; the per-endpoint URLs below default from it
    mes_get: str = ""
    mes_scan: str = ""
    mes_pair: str = ""
    mes_notify: str = ""
    enroll_password: str = ""
    scan_quiet_timeout: Positive = 10.0
    #: Seconds a scan's replies wait for an unavailable database before the scan ends in an
    #: internal error (under RabbitMQ's 30-minute consumer timeout: the replies stay unacked).
    scan_store_outage: Positive = 300.0
    #: Seconds a MES lookup keeps retrying an unreachable or failing MES (the device waits).
    mes_retry_for: Positive = 300.0
    #: Accept scan replies from devices that never enrolled (seed-000 reference clients on
    #: the broker) and record them as devices of kind "legacy"; off refuses them.
    scan_legacy: bool = True
    #: Declare ``hwinfo_queue`` as a quorum queue (clustered brokers); reference devices
    #: cannot declare it then (docs/bus.md).
    scan_queue_quorum: bool = False
    heartbeat_interval: Positive = 15.0
    offline_after: Positive = 45.0
    call_timeout: Positive = 10.0
    #: Seconds a new agent connection has to authenticate (enrolling ones get 5x as long).
    handshake_timeout: Positive = LINK_TIMEOUT
    log_level: str = "info"
    insecure: bool = False
    #: Hold enrollments without a password or token for ``hwfleet keys accept``.
    manual_approval: bool = False
    #: Password enrollments one source (IPv4 address, IPv6 /64) may make per window.
    enroll_password_per_source: AtLeastOne = 20
    #: The sliding window of ``enroll_password_per_source``, in seconds.
    enroll_password_window: Positive = 3600.0
    #: No password enrollment once this many devices hold an accepted key (0: no limit);
    #: tokens and operator accepts still admit.
    enroll_password_fleet_limit: ZeroOff = 10_000
    #: Links without a client certificate (not yet enrolled) open at once, per source ...
    anonymous_links_per_source: AtLeastOne = 16
    #: ... and in total. 512, not 128: a 1,000-device storm cost the controller 3.2-3.8 ms
    #: of CPU per device with 512 against 6.1-6.3 ms with 128 (fewer refused and retried
    #: knocks), and a flood of 400 links peaked about as high (docs/scale.md, security.md).
    anonymous_links: AtLeastOne = 512
    #: Longest line (bytes) an unidentified link may send: an enroll request is < 20 KiB.
    anonymous_line_limit: Annotated[int, msgspec.Meta(ge=4096, le=1 << 20)] = 64 * 1024
    #: Messages per second each source may send on its unidentified links (sustained) ...
    anonymous_message_rate: Positive = 5.0
    #: ... and at once.
    anonymous_message_burst: AtLeastOne = 40
    #: Run discovery on this interface (multicast); empty: only when asked, on loopback.
    discovery_interface: str = ""
    #: The UDP port devices answer discovery on (the browser queries it).
    discovery_port: int = DISCOVERY_PORT
    #: This replica's name on the bus (default: host name and a random suffix).
    replica_id: str = ""
    # --- dashboard ---
    #: Serve the web dashboard at ``/`` on the API address (docs/dashboard.md).
    dashboard: bool = True
    #: Seconds a dashboard login stays valid without use (each request restarts the clock).
    dashboard_session_idle: Positive = 86400.0
    # --- mdp ---
    #: Receive machines' diagnostics reports on H:P (UDP; empty: off); keys of enrolled
    #: devices are mirrored to <data-dir>/.known_machines either way.
    mdp_report_listen: str = ""
    # --- imaging ---
    #: Serve images to enrolled devices (mutual TLS) here; empty: the agent gateway's host and
    #: its port + 2 (7802; port 0 when the gateway's is 0); "off": no image server.
    image_listen: str = ""
    #: Where uploaded images are kept (empty: DATA_DIR/images).
    image_dir: str = ""
    # --- graphs ---
    #: A graph task's lease: a runner that stops renewing it (killed) loses the task this
    #: long after its last heartbeat, and another runner takes it.
    graph_lease: Positive = 5.0
    #: How often a runner renews its leases and notices cancelled graphs.
    graph_heartbeat: Positive = 1.0
    #: Graph tasks one controller runs at once (RackHD: 100 per scheduler stream).
    graph_max_in_flight: AtLeastOne = 100
    #: A task's timeout when its definition gives none.
    graph_task_timeout: Positive = 3600.0
    # --- cli: history retention ---
    #: Days to keep events; older ones are pruned (0: keep them forever).
    retention_events_days: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    #: Days to keep finished tasks (complete, error, lost); running ones are never pruned.
    retention_tasks_days: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    #: Seconds between pruning runs (the first runs at start-up).
    retention_interval: Positive = 3600.0
    # --- boot ---
    #: Serve DHCP (Kea), TFTP and HTTP boot on this interface (empty: boot services off).
    boot_interface: str = ""
    #: The dynamic DHCP pool, ``A-B``; its subnet is the boot interface's.
    dhcp_range: str = ""
    #: Seconds a DHCP lease lasts.
    dhcp_lease_time: Annotated[int, msgspec.Meta(ge=60)] = 3600
    #: This server's address on the boot network (default: the interface's IPv4 address).
    boot_server_ip: str = ""
    #: Base URL iPXE fetches its scripts from (default: http://<boot server ip>:<API port>).
    boot_http_url: str = ""
    #: TFTP H:P (default: <boot server ip>:69); "off" serves no TFTP.
    boot_tftp_listen: str = ""
    #: The directory TFTP serves (read-only; default: <data dir>/boot/tftp, filled at start
    #: with iPXE's loaders from ``boot_ipxe_dir``).
    boot_tftp_root: str = ""
    #: Where Debian's ipxe package keeps undionly.kpxe, ipxe.efi and snponly.efi.
    boot_ipxe_dir: str = "/usr/lib/ipxe"
    #: Words put before ``kea-dhcp4`` (e.g. ``ip netns exec NS`` to run Kea in a namespace).
    boot_kea_launcher: str = ""
    #: Seconds between reads of Kea's lease table (new leases become events).
    boot_lease_poll: Positive = 1.0
    #: Served at /boot/files/ (kernels, initrds; default <data dir>/boot/files);
    #: ``hwfleet boot build-discovery`` writes discovery/vmlinuz and discovery/initrd.img.
    boot_files_dir: str = ""
    # --- oob ---
    #: Seconds one BMC operation (a power command, one poll) may take before it fails.
    bmc_timeout: Positive = 10.0
    #: BMC calls in flight at once (each blocks one worker thread while the BMC answers).
    bmc_workers: AtLeastOne = 32
    #: Seconds a replica holds a claimed poller; another replica takes it over after that.
    poller_lease: Positive = 120.0
    #: Seconds between looks for due pollers when none is due sooner.
    poller_tick: Positive = 1.0
    # --- boot: proxyDHCP ---
    #: Answer only PXE boot options on the boot interface (proxyDHCP, like dnsmasq's proxy
    #: mode): another DHCP server gives the addresses, hwfleet runs no Kea.
    dhcp_proxy: bool = False
    # --- imaging: upload limit ---
    #: The largest disk an uploaded image may describe, in bytes: a raw upload's size, what a
    #: raw.gz/raw.zst decompresses to, a qcow2's virtual size. A bigger one (a decompression
    #: bomb among them) is refused with 413 as soon as it passes this (docs/imaging.md).
    image_max_disk_size: Annotated[int, msgspec.Meta(gt=0)] = 256 * 1024**3
    # --- oob: firmware tasks ---
    #: Seconds a firmware task's row may go untouched before another replica (or this
    #: controller after a restart) takes it over and resumes it (docs/oob.md).
    bmc_task_stale: Positive = 60.0

    def db_url(self) -> str:
        return self.db or f"sqlite+aiosqlite:///{Path(self.data_dir) / 'hwfleet.db'}"

    def mes_urls(self) -> dict[str, str]:
        """The four MES endpoints (DESIGN §5/§8); empty strings where none is configured."""
        base = self.mes.rstrip("/")

        def pick(explicit: str, path: str) -> str:
            return explicit or (f"{base}{path}" if base else "")

        return {
            "get": pick(self.mes_get, "/deviceInfo/getById"),
            "scan": pick(self.mes_scan, "/log/deviceScan"),
            "pair": pick(self.mes_pair, "/operations/pair"),
            "notify": pick(self.mes_notify, "/notifications/devicescan"),
        }


class AgentSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``hwfleet agent`` (and each simulated device of ``sim``)."""

    controller: str = "127.0.0.1:7800"
    data_dir: str = msgspec.field(default_factory=default_data_dir)
    simulate: str = ""  # a profile file: report what it says instead of this machine
    transport: str = "stream"
    bus: str = ""
    enroll_password: str = ""
    enroll_token: str = ""
    #: Pin this controller CA on first contact instead of trusting the first one seen.
    controller_fingerprint: str = ""
    #: Answer discovery queries (seed 004) on UDP; the group and port are configurable.
    discovery: bool = True
    discovery_port: int = DISCOVERY_PORT
    discovery_group: str = DISCOVERY_GROUP
    discovery_interface: str = ""
    #: Advertise _hwfleet._tcp over DNS-SD (python-zeroconf).
    dnssd: bool = False
    heartbeat_interval: Positive = 15.0
    reconnect_min: Positive = 0.5
    reconnect_max: Positive = 30.0
    log_level: str = "info"
    insecure: bool = False
    #: Serve the device admin listener here (H:P; empty: off): seed 004's direct access by
    #: trusted key, or once by the device password (docs/security.md).
    admin_listen: str = ""
    # --- mdp ---
    #: Serve the diagnostics endpoint (seed 002, UDP) on H:P; empty turns it off.
    mdp_listen: str = "0.0.0.0:12345"
    #: Also accept MDP version "1.0", whose requests carry the machine key (unsafe).
    mdp_legacy_keys: bool = False
    #: Send diagnostics reports to the monitoring host at H:P (UDP); empty: none.
    mdp_report_to: str = ""
    #: Seconds between two reports.
    mdp_report_interval: Positive = 60.0
    #: The operations each report runs, comma-separated.
    mdp_report_operations: str = "load_and_memory,disk_health"
    #: SSH private key this machine pulls cluster folders with (empty:
    #: DATA_DIR/cluster_ssh_key, made at first use and handed out by `hwfleet mdp cluster`).
    mdp_cluster_ssh_key: str = ""
    #: known_hosts holding the other members' host keys (checked strictly; empty:
    #: DATA_DIR/known_hosts, filled by `hwfleet mdp cluster`).
    mdp_cluster_known_hosts: str = ""
    mdp_cluster_user: str = "root"
    #: Seconds between two sync rounds.
    mdp_cluster_interval: Positive = 30.0
    #: Take part in cluster folder sync at all (cluster_info still answers when off).
    mdp_cluster_sync: bool = True
    #: Where the other members' keys go (empty: ~/.ssh/authorized_keys of the agent's user).
    mdp_cluster_authorized_keys: str = ""
    #: This machine's sshd host public key (empty: the first of /etc/ssh/ssh_host_*_key.pub).
    mdp_cluster_host_key: str = ""
    # --- imaging ---
    #: Where standby.cache_images keeps images (empty: DATA_DIR/image-cache).
    image_cache: str = ""
    #: Most bytes the cache may hold ("20G", "500M"; empty: free space minus a reserve).
    cache_budget: str = ""
    #: The controller's image server H:P (empty: the controller's host, its port + 2).
    image_server: str = ""
    # --- boot ---
    #: Seconds to connect (TCP + TLS) and to enroll; a slow machine (an emulated VM booted
    #: into the discovery environment) needs more than the default.
    connect_timeout: Positive = LINK_TIMEOUT


S = TypeVar("S", bound=msgspec.Struct)

_SECRET_FIELDS = frozenset({"enroll_password", "enroll_token", "bus_credentials"})


#: ``scheme://user:password@`` in a URL (bus, database, MES): the password is never echoed.
_URL_PASSWORD = re.compile(r"(://[^/:@\s'\"]*):[^/@\s'\"]*@")


def _without_passwords(text: str) -> str:
    return _URL_PASSWORD.sub(r"\1:***@", text)


def load(
    cls: type[S],
    *,
    flags: Mapping[str, Any] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    section: str | None = None,
    origins: dict[str, str] | None = None,
) -> S:
    """Build ``cls`` from defaults, the TOML file, the environment and flags (in that order).

    ``origins``, when given, is filled with where each set value came from (a file path,
    ``HWFLEET_X`` or ``--x``), for errors found later (a port in use, a database down).
    """
    env = os.environ if env is None else env
    fields = set(cls.__struct_fields__)
    values: dict[str, Any] = {}
    origin: dict[str, str] = {} if origins is None else origins

    path = config_file or env.get(f"{ENV_PREFIX}CONFIG")
    if path:
        table = _read_toml(Path(path), section or _section_of(cls))
        for key, value in table.items():
            values[key] = value
            origin[key] = str(path)
    for name in fields:
        raw = env.get(f"{ENV_PREFIX}{name.upper()}")
        if raw is not None:
            values[name] = raw
            origin[name] = f"{ENV_PREFIX}{name.upper()}"
    for key, value in (flags or {}).items():
        if value is None:
            continue
        if key not in fields:
            raise SettingsError(f"unknown setting {key!r}")
        values[key] = value
        origin[key] = f"--{key.replace('_', '-')}"

    _switches(cls, values)

    def refuse(key: str, reason: str) -> SettingsError:
        shown = "***" if key in _SECRET_FIELDS else _without_passwords(repr(values.get(key)))
        where = origin.get(key, "the default")
        return SettingsError(f"setting {key} = {shown} (from {where}): {reason} — {fix_for(key)}")

    for key in _durations(cls) & values.keys():
        if isinstance(values[key], str):
            try:
                values[key] = parse_duration(values[key])
            except ValueError as exc:
                raise refuse(key, str(exc)) from None
    try:
        settings = msgspec.convert(values, cls, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc)
        for key in origin:
            if f"`$.{key}`" in text:
                raise refuse(key, text) from None
        raise SettingsError(text) from None
    for key, check in {**_CHECKS, **_OWN_CHECKS.get(cls, {})}.items():
        if key in fields:
            try:
                check(getattr(settings, key))
            except ValueError as exc:
                raise refuse(key, str(exc)) from None
    return settings


def fix_for(key: str) -> str:
    """How an operator sets ``key``: the flag and the environment variable."""
    return f"set --{key.replace('_', '-')} or {ENV_PREFIX}{key.upper()}"


def _durations(cls: type[Any]) -> set[str]:
    """The fields that hold a duration: they also accept ``90s``, ``15m``, ``1h``, ``2d``."""
    hints = get_type_hints(cls, include_extras=True)
    return {name for name, hint in hints.items() if hint == Positive}


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def check_log_level(value: str) -> None:
    if value.lower() not in LOG_LEVELS:
        raise ValueError(f"{value!r} is not a log level (use {', '.join(LOG_LEVELS)})")


def _check_listen(value: str) -> None:
    parse_host_port(value, allow_any_port=True)


def _check_controller(value: str) -> None:
    parse_host_port(value)


def _check_optional_listen(value: str) -> None:
    if value:
        parse_host_port(value, allow_any_port=True)


def _check_optional_controller(value: str) -> None:
    if value:
        parse_host_port(value)


def _check_bus(value: str) -> None:
    # Empty only where that means "none" (an agent on the stream transport).
    scheme, sep, _ = value.partition("://")
    if value and (not sep or scheme.lower() not in ("memory", "amqp", "amqps")):
        raise ValueError("not a bus URL (use memory:// or amqp://USER:PASSWORD@HOST:PORT/VHOST)")


def _check_server_bus(value: str) -> None:
    if not value:
        raise ValueError("is empty (use memory:// or amqp://USER:PASSWORD@HOST:PORT/VHOST)")
    _check_bus(value)


def _check_db(value: str) -> None:
    if not value:
        return  # SQLite in the data dir
    from hwfleet.store.errors import HINT, StoreUnavailableError
    from hwfleet.store.urls import normalize_url

    try:
        normalize_url(value)
    except StoreUnavailableError as exc:
        raise ValueError(str(exc).replace(f" — {HINT}", "")) from None


def _check_http(value: str) -> None:
    if value and not value.startswith(("http://", "https://")):
        raise ValueError("not an http:// or https:// URL")


def _check_transport(value: str) -> None:
    if value not in ("stream", "amqp"):
        raise ValueError("must be stream or amqp")


#: Checks beyond the types, by field name (a field only some structs have is skipped).
_CHECKS: dict[str, Callable[[Any], None]] = {
    "log_level": check_log_level,
    "agent_listen": _check_listen,
    "api_listen": _check_listen,
    "controller": _check_controller,
    "bus": _check_bus,
    "db": _check_db,
    "mes": _check_http,
    "mes_get": _check_http,
    "mes_scan": _check_http,
    "mes_pair": _check_http,
    "mes_notify": _check_http,
    "transport": _check_transport,
    "mdp_listen": _check_optional_listen,
    "mdp_report_to": _check_optional_controller,
    "image_server": _check_optional_controller,
    "mdp_report_listen": _check_optional_listen,
}


#: Where one struct needs more than the shared check (the controller always has a bus).
_OWN_CHECKS: dict[type[Any], dict[str, Callable[[Any], None]]] = {
    ServerSettings: {"bus": _check_server_bus},
}


_SWITCH_WORDS = {"on": True, "yes": True, "off": False, "no": False}


def _switches(cls: type[Any], values: dict[str, Any]) -> None:
    """``on``/``off``/``yes``/``no`` for a yes-or-no setting (``--scan-legacy off``)."""
    switches = {f.name for f in msgspec.structs.fields(cls) if isinstance(f.default, bool)}
    for key in switches & values.keys():
        word = values[key]
        if isinstance(word, str) and word.strip().lower() in _SWITCH_WORDS:
            values[key] = _SWITCH_WORDS[word.strip().lower()]


def _section_of(cls: type[Any]) -> str:
    return "server" if cls is ServerSettings else "agent"


#: The tables a config file may have, and the settings each may hold.
_SECTIONS: dict[str, type[msgspec.Struct]] = {"server": ServerSettings, "agent": AgentSettings}


def _read_toml(path: Path, section: str) -> dict[str, Any]:
    """``section``'s table; every key of the file is checked, so no misplaced key is ignored."""
    import tomllib  # only with a config file: the agent process gets its settings as JSON

    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None
    for name, table in document.items():
        if name not in _SECTIONS:
            raise SettingsError(
                f"{path}: unknown top-level key {name!r} — settings go in a [server] or "
                "[agent] table"
            )
        if not isinstance(table, dict):
            raise SettingsError(f"{path}: [{name}] must be a table")
        fields = set(_SECTIONS[name].__struct_fields__)
        for key in table:
            if key not in fields:
                raise SettingsError(
                    f"{path}: unknown setting {key!r} in [{name}] "
                    f"(known: {', '.join(sorted(fields))})"
                )
    table = document.get(section, {})
    return dict(table)
