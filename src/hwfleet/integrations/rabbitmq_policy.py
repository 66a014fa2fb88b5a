"""The RabbitMQ policy that gives ``hwinfo_queue`` what its declaration no longer carries.

``hwinfo_queue`` is declared as seed 000's reference devices declare it
(durable, no arguments), so they can declare it too. Dead-lettering — the
safety net for a reply the broker itself drops — comes from a policy instead:
``hwfleet-hwinfo-queue`` on ``^hwinfo_queue$`` with ``dead-letter-exchange``
= ``<prefix>dead-letter``. (hwfleet dead-letters what it refuses by
publishing it there itself, so a broker without the policy loses nothing
hwfleet handles.)

The controller applies it at start, through whichever tool the broker
offers: the management API of ``--bus-credentials http(s)://…``, else the
management API on the bus host's port 15672 with the bus URL's credentials,
else ``rabbitmqctl`` when it is on this machine. The log says which one did
it, or, when none could, the command for the operator to run.
"""

from __future__ import annotations

import json
import logging
import shutil
from typing import Protocol
from urllib.parse import urlsplit

from hwfleet.bus.topology import DEFAULT_PREFIX, HWINFO_QUEUE, Topology
from hwfleet.integrations.rabbitmq_users import (
    BusCredentialsError,
    RabbitmqctlProvisioner,
    vhost_of,
)

log = logging.getLogger(__name__)

POLICY_NAME = "hwfleet-hwinfo-queue"
PATTERN = f"^{HWINFO_QUEUE}$"


class _PolicyTool(Protocol):
    async def set_policy(self, name: str, pattern: str, definition: dict[str, object]) -> None: ...


def definition(prefix: str = DEFAULT_PREFIX) -> dict[str, object]:
    return {"dead-letter-exchange": Topology(prefix).dead_letter_exchange}


def _tools(bus_credentials: str, bus_url: str, prefix: str) -> list[tuple[str, _PolicyTool]]:
    from hwfleet.integrations.rabbitmq_users_http import ManagementApiProvisioner

    vhost = vhost_of(bus_url)
    if urlsplit(bus_credentials).scheme in ("http", "https"):
        api = ManagementApiProvisioner.from_urls(bus_credentials, bus_url, vhost, prefix=prefix)
        return [(f"the management API at {api.base_url}", api)]
    # One HTTP request is far cheaper than rabbitmqctl's Erlang VM (seconds of CPU): ask the
    # management API first; a broker without it refuses the connection at once.
    host = urlsplit(bus_url).hostname or "localhost"
    guess = f"http://{f'[{host}]' if ':' in host else host}:15672"
    api = ManagementApiProvisioner.from_urls(guess, bus_url, vhost, prefix=prefix)
    tools: list[tuple[str, _PolicyTool]] = [(f"the management API at {guess}", api)]
    if shutil.which("rabbitmqctl") is not None:
        tools.append(("rabbitmqctl", RabbitmqctlProvisioner(vhost, prefix=prefix)))
    return tools


async def apply_hwinfo_policy(
    bus_credentials: str, bus_url: str, *, prefix: str = DEFAULT_PREFIX
) -> str | None:
    """Apply the policy; the name of the tool that did it, or None (logged, never raised)."""
    wanted = definition(prefix)
    vhost = vhost_of(bus_url)
    failures: list[str] = []
    for name, tool in _tools(bus_credentials, bus_url, prefix):
        try:
            await tool.set_policy(POLICY_NAME, PATTERN, wanted)
        except (BusCredentialsError, OSError, ValueError) as exc:
            failures.append(f"{name}: {exc}")
            continue
        log.info(
            "applied RabbitMQ policy %s (%s → %s) in vhost %r through %s",
            POLICY_NAME,
            PATTERN,
            json.dumps(wanted),
            vhost,
            name,
        )
        return name
    log.warning(
        "could not apply the RabbitMQ policy that dead-letters what the broker drops from "
        "%s (%s). Scans work without it; to apply it yourself: rabbitmqctl set_policy -p %s "
        "--apply-to queues %s '%s' '%s'",
        HWINFO_QUEUE,
        "; ".join(failures),
        vhost,
        POLICY_NAME,
        PATTERN,
        json.dumps(wanted),
    )
    return None
