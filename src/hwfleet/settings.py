"""Configuration: one settings object per process, layered defaults < TOML < env < flags.

Both structs load through :func:`load`: a TOML file (``--config`` or
``HWFLEET_CONFIG``; table ``[server]`` or ``[agent]``), then ``HWFLEET_<FIELD>``
environment variables, then command-line flags. Errors name the setting and
where its bad value came from.

We validate with msgspec rather than pydantic-settings so that an agent stays
inside its memory budget (pydantic adds ~14 MB of RSS; DESIGN §9 deviation).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec

from hwfleet.types import DISCOVERY_GROUP, DISCOVERY_PORT

ENV_PREFIX = "HWFLEET_"
#: A duration in seconds: zero or less would spin a loop or time out at once.
Positive = Annotated[float, msgspec.Meta(gt=0)]
#: A count that must allow at least one.
AtLeastOne = Annotated[int, msgspec.Meta(ge=1)]
#: A limit where 0 means none.
ZeroOff = Annotated[int, msgspec.Meta(ge=0)]


class SettingsError(ValueError):
    """A setting is missing or wrong; the message says which and where from."""


def default_data_dir() -> str:
    return os.path.join(os.path.expanduser("~"), ".hwfleet")


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
    handshake_timeout: float = 15.0
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
    #: ... and in total.
    anonymous_links: AtLeastOne = 128
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
) -> S:
    """Build ``cls`` from defaults, the TOML file, the environment and flags (in that order)."""
    env = os.environ if env is None else env
    fields = set(cls.__struct_fields__)
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}

    path = config_file or env.get(f"{ENV_PREFIX}CONFIG")
    if path:
        table = _read_toml(Path(path), section or _section_of(cls))
        for key, value in table.items():
            if key not in fields:
                raise SettingsError(
                    f"{path}: unknown setting {key!r} (known: {', '.join(sorted(fields))})"
                )
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
    try:
        return msgspec.convert(values, cls, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc)
        for key, where in origin.items():
            if f"`$.{key}`" in text:
                shown = "***" if key in _SECRET_FIELDS else _without_passwords(repr(values[key]))
                raise SettingsError(f"setting {key} = {shown} (from {where}): {text}") from None
        raise SettingsError(text) from None


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


def _read_toml(path: Path, section: str) -> dict[str, Any]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None
    table = document.get(section, {})
    if not isinstance(table, dict):
        raise SettingsError(f"{path}: [{section}] must be a table")
    return table
