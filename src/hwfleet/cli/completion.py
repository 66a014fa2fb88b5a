"""Shell completion for targets (device names, uuid prefixes, groups) and method names.

Completion runs on every Tab, so it asks the controller with a short timeout and
completes nothing rather than hang or print an error into the operator's shell.
Enable it with ``hwfleet --install-completion`` (bash, zsh, fish, PowerShell).
"""

from __future__ import annotations

import os

#: Seconds a Tab may wait for the controller.
COMPLETION_TIMEOUT = 1.5
#: Agent → controller methods: never sent to a device, so never completed.
_INBOUND = {"handshake", "log", "task_status"}


def method_names(incomplete: str) -> list[str]:
    """The methods a device answers (``run TARGET <Tab>``)."""
    from hwfleet.protocol import methods

    names = {
        value
        for key, value in vars(methods).items()
        if key.isupper() and not key.startswith("_") and isinstance(value, str)
    }
    names -= _INBOUND
    return sorted(n for n in names if n.startswith(incomplete))


def targets(incomplete: str) -> list[str]:
    """Device names, short uuid prefixes and ``G@`` groups that start with ``incomplete``."""
    try:
        return _targets(incomplete)
    except Exception:  # no controller, no token, a timeout: complete nothing, quietly
        return []


def _targets(incomplete: str) -> list[str]:
    from hwfleet.cli.client import ApiClient
    from hwfleet.targeting import short_prefixes

    # The last word of a compound expression is the one being completed.
    head, _, word = incomplete.rpartition(",")
    head = f"{head}," if head else ""
    with ApiClient(None, os.environ.get("HWFLEET_DATA_DIR"), timeout=COMPLETION_TIMEOUT) as client:
        if word.startswith("G@"):
            groups = client.get("/api/v1/groups")
            found = [f"G@{g['name']}" for g in groups]
        else:
            devices = client.get("/api/v1/devices", params={"discovered": "false"})
            found = [d["name"] for d in devices if d.get("name")]
            found += list(short_prefixes(d["uuid"] for d in devices).values())
    return sorted({head + f for f in found if f.startswith(word)})
