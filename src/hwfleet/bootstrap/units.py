"""The service definitions bootstrap installs: a systemd unit, or a sysvinit script."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

SERVICE = "hwfleet-agent"


@dataclass(frozen=True, slots=True)
class Layout:
    """Where things go on the target; ``root`` moves all of it (a fake root in tests)."""

    root: str = "/"

    def at(self, path: str) -> str:
        """``path`` on the target as this layout places it."""
        return path if self.root == "/" else self.root.rstrip("/") + path

    @property
    def prefix(self) -> str:
        return self.at("/opt/hwfleet")

    @property
    def venv(self) -> str:
        return f"{self.prefix}/venv"

    @property
    def wheels(self) -> str:
        return f"{self.prefix}/wheels"

    @property
    def config(self) -> str:
        return f"{self.prefix}/agent.toml"

    @property
    def state(self) -> str:
        return f"{self.prefix}/installed.json"

    @property
    def data_dir(self) -> str:
        return self.at("/var/lib/hwfleet")

    @property
    def unit_path(self) -> str:
        return self.at(f"/etc/systemd/system/{SERVICE}.service")

    @property
    def init_script(self) -> str:
        return self.at(f"/etc/init.d/{SERVICE}")

    @property
    def pidfile(self) -> str:
        return self.at(f"/run/{SERVICE}.pid")

    @property
    def log_file(self) -> str:
        return self.at(f"/var/log/{SERVICE}.log")

    def command(self, controller: str) -> list[str]:
        # --controller is required on the command line; everything else is in the config.
        return [f"{self.venv}/bin/hwfleet", "agent", "--controller", controller,
                "--config", self.config]  # fmt: skip


def systemd_unit(layout: Layout, controller: str) -> str:
    exec_start = " ".join(shlex.quote(a) for a in layout.command(controller))
    return f"""[Unit]
Description=hwfleet agent (diagnostics endpoint, controller link)
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart={exec_start}
Restart=always
RestartSec=5
UMask=0077

[Install]
WantedBy=multi-user.target
"""


def sysvinit_script(layout: Layout, controller: str) -> str:
    cmd = layout.command(controller)
    args = " ".join(shlex.quote(a) for a in cmd[1:])
    exe, pid = shlex.quote(cmd[0]), shlex.quote(layout.pidfile)
    logf = shlex.quote(layout.log_file)
    return f"""#!/bin/sh
### BEGIN INIT INFO
# Provides:          {SERVICE}
# Required-Start:    $network $remote_fs
# Required-Stop:     $network $remote_fs
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: hwfleet agent
### END INIT INFO
# Written by hwfleet bootstrap; a second bootstrap run rewrites it only if it changed.
EXE={exe}
PIDFILE={pid}
LOG={logf}
case "$1" in
  start)
    mkdir -p "$(dirname "$PIDFILE")" "$(dirname "$LOG")"
    umask 077
    start-stop-daemon --start --quiet --background --make-pidfile --pidfile "$PIDFILE" \\
      --output "$LOG" --exec "$EXE" -- {args}
    ;;
  stop)
    start-stop-daemon --stop --quiet --retry 10 --pidfile "$PIDFILE" --remove-pidfile
    ;;
  restart)
    "$0" stop; "$0" start
    ;;
  status)
    start-stop-daemon --status --pidfile "$PIDFILE"
    ;;
  *)
    echo "usage: $0 start|stop|restart|status" >&2; exit 2
    ;;
esac
"""


def agent_config(controller: str, settings: dict[str, object], layout: Layout) -> str:
    """The agent's ``[agent]`` TOML table (0600: it may hold the enrollment token)."""
    values: dict[str, object] = {"controller": controller, "data_dir": layout.data_dir}
    values.update(settings)
    lines = ["[agent]"]
    for key, value in values.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, int | float):
            lines.append(f"{key} = {value}")
        else:
            escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'{key} = "{escaped}"')
    return "\n".join(lines) + "\n"
