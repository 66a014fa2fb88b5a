"""Boot profiles: the iPXE scripts a node is given, and where an active graph names one.

A profile is an iPXE script template (``string.Template``: ``$base``, ``$node``,
``$mac``, ``$controller``, ``$ca`` (the controller CA's fingerprint, which the discovery
agent pins) and the profile's options). Built in: ``discovery`` (the discovery
environment, enrolling with a single-use token) and ``local`` (boot from the first
disk). Operators add ``<data dir>/boot/profiles/<name>.ipxe``. Values are checked
before they go into a script: a newline in an option would be a command to iPXE.
"""

from __future__ import annotations

import logging
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from hwfleet.bus.base import Bus, RpcError
from hwfleet.bus.topology import word

log = logging.getLogger(__name__)

_SAFE_VALUE = re.compile(r"[A-Za-z0-9._:/=,@+%~-]{0,512}")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

BUILTIN: dict[str, str] = {
    "discovery": """#!ipxe
echo hwfleet: discovery for $node
kernel $base/boot/files/discovery/vmlinuz initrd=initrd.img console=tty0 console=ttyS0,115200 \
hwfleet.controller=$controller hwfleet.ca=$ca \
hwfleet.token=$token hwfleet.node=$node hwfleet.http=$base
initrd $base/boot/files/discovery/initrd.img
boot
""",
    # No graph wants this node: hand the machine back to its own disk.
    "local": """#!ipxe
echo hwfleet: no work for $node, booting from disk
sanboot --no-describe --drive 0x80 || exit
""",
}


@dataclass(frozen=True, slots=True)
class BootProfile:
    name: str
    options: dict[str, str] = field(default_factory=dict)


class ActiveGraphProfiles(Protocol):
    """The boot profile of a node's active graph, or None (the task-graph engine serves it)."""

    async def boot_profile(self, node_id: str) -> BootProfile | None: ...


class NoActiveGraphs:
    """No task-graph engine: no node ever has an active graph."""

    async def boot_profile(self, node_id: str) -> BootProfile | None:
        return None


class BusGraphProfiles:
    """Asks ``task`` ``methods.getBootProfile.<nodeid>`` (DESIGN §11/§14).

    The reply is taken as ``{"profile": name | null, "options": {...}}``; no engine on the
    bus (``no_server``) or no answer in time means no active graph.
    """

    def __init__(self, bus: Bus, timeout: float = 3.0) -> None:
        self._bus = bus
        self._timeout = timeout

    async def boot_profile(self, node_id: str) -> BootProfile | None:
        try:
            reply = await self._bus.call(
                "task", f"getBootProfile.{word(node_id)}", {}, timeout=self._timeout
            )
        except RpcError as exc:
            if exc.code not in ("no_server", "timeout"):
                log.warning("getBootProfile for %s: %s", node_id, exc)
            return None
        name = reply.get("profile")
        if not isinstance(name, str) or not name:
            return None
        options = reply.get("options") or {}
        return BootProfile(name, {str(k): str(v) for k, v in dict(options).items()})


class ProfileLibrary:
    """Finds and renders profiles (operator files shadow the built-ins)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def template(self, name: str) -> str:
        if not _SAFE_NAME.fullmatch(name):
            raise LookupError(f"{name!r} is not a profile name")
        path = self.directory / f"{name}.ipxe"
        if path.is_file():
            return path.read_text()
        if name in BUILTIN:
            return BUILTIN[name]
        raise LookupError(f"no boot profile {name!r} (add {path})")

    def render(self, name: str, values: dict[str, str]) -> str:
        for key, value in values.items():
            if not _SAFE_VALUE.fullmatch(value):
                raise ValueError(f"boot profile value {key}={value[:40]!r} has unsafe characters")
        return string.Template(self.template(name)).safe_substitute(values)
