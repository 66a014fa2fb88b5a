"""``hwfleet bootstrap --cluster-sync FOLDER``: the folder-sync SSH trust, installed over SSH.

Cluster members pull each other's folder with rsync over SSH (hwfleet.mdp.sync). Bootstrap
already holds a verified, root SSH session to every machine, so it installs what that
needs itself, with the agent's own code (hwfleet.mdp.trust) run by the target's venv:

1. **identity** (each host, after the agent is installed): the per-machine sync key,
   ed25519, ``/var/lib/hwfleet/cluster_ssh_key`` (0600, made once), whether rrsync is
   installed, and the sshd host key *this SSH session verified* (not a file read back);
2. **trust** (each host, once every host has its identity): each other host's key into
   root's ``~/.ssh/authorized_keys`` as ``command="rrsync -ro FOLDER",restrict,from="IP"``
   (read-only, that folder, that address), its host key into the agent's cluster
   known_hosts, and whether it has rrsync into ``cluster_peers.json``.

The controller keeps what it installed in ``<data-dir>/bootstrap_cluster.json`` (folder ->
ip -> identity and the peers trusted there); ``hwfleet mdp cluster`` skips its own key
exchange for members bootstrap already made trust each other for that folder.
"""

from __future__ import annotations

import json
import shlex
import socket
from pathlib import Path
from typing import Any

from hwfleet.bootstrap import remote
from hwfleet.bootstrap.units import Layout
from hwfleet.trust.files import write_private

RECORD = "bootstrap_cluster.json"

_IDENTITY = """
import json, sys
from hwfleet.mdp import trust
print(json.dumps({"ssh_key": trust.ensure_key(sys.argv[1]), "rrsync": trust.rrsync() is not None}))
"""

_TRUST = """
import json, sys
from hwfleet.mdp import trust
how, changed = trust.trust_peers_changed(**json.load(sys.stdin))
print(json.dumps({"how": how, "changed": changed}))
"""


def authorized_keys(layout: Layout, settings: dict[str, object]) -> str:
    """The sync user's authorized_keys on the target (root's unless the settings name one)."""
    given = settings.get("mdp_cluster_authorized_keys")
    if isinstance(given, str) and given:
        return given
    if str(settings.get("mdp_cluster_user", "root")) != "root":
        raise ValueError(
            "--cluster-sync with mdp_cluster_user other than root needs "
            "--agent-setting mdp_cluster_authorized_keys=PATH (that user's authorized_keys)"
        )
    return layout.at("/root/.ssh/authorized_keys")


def agent_settings(
    layout: Layout, folder: str | None, settings: dict[str, object]
) -> dict[str, object]:
    """The agent manages the same authorized_keys bootstrap writes (a fake root moves it)."""
    if not folder:
        return settings
    return {**settings, "mdp_cluster_authorized_keys": authorized_keys(layout, settings)}


async def identity(conn: Any, layout: Layout, folder: str, host_key: Any) -> dict[str, Any]:
    """Make (once) the sync key and the folder on the target; its public identity."""
    python = f"{layout.venv}/bin/python"
    await remote.run(conn, ["mkdir", "-p", layout.at(folder)])
    out = await remote.run(conn, [python, "-c", _IDENTITY, f"{layout.data_dir}/cluster_ssh_key"])
    found = json.loads(out)
    if host_key is None:
        raise remote.RemoteError("the SSH session has no server host key to trust")
    line = host_key.export_public_key("openssh").decode().split()
    return {"ssh_key": found["ssh_key"], "host_key": " ".join(line[:2]),
            "rrsync": bool(found["rrsync"])}  # fmt: skip


async def trust(
    conn: Any, layout: Layout, folder: str, settings: dict[str, object],
    peers: dict[str, dict[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    """Let ``peers`` read the folder here and record their host keys; what changed."""
    args = {
        "authorized_keys": authorized_keys(layout, settings),
        "known_hosts": f"{layout.data_dir}/known_hosts",
        "folder": layout.at(folder),
        "peers": peers,
    }
    python = f"{layout.venv}/bin/python"
    result = await conn.run(shlex.join([python, "-c", _TRUST]), input=json.dumps(args), check=False)
    if result.exit_status != 0:
        err = str(result.stderr or "").strip()[-400:]
        raise remote.RemoteError(f"installing the cluster trust failed: {err}")
    found: dict[str, Any] = json.loads(str(result.stdout))
    return found


def address(host: str) -> str:
    return socket.gethostbyname(host)


def record(data_dir: str, folder: str, ip: str, ident: dict[str, Any], peers: list[str]) -> None:
    """Remember on the controller which peers ``ip`` lets read ``folder``."""
    path = Path(data_dir) / RECORD
    book = load(data_dir)
    book.setdefault(folder, {})[ip] = {**ident, "peers": sorted(peers)}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, json.dumps(book, indent=1, sort_keys=True).encode())


def load(data_dir: str) -> dict[str, dict[str, Any]]:
    try:
        book = json.loads((Path(data_dir) / RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return book if isinstance(book, dict) else {}


def installed_for(data_dir: str, folder: str, members: list[str]) -> bool:
    """True when bootstrap made every member trust every other one for ``folder``."""
    entries = load(data_dir).get(folder, {})
    for ip in members:
        entry = entries.get(ip)
        if not isinstance(entry, dict) or not set(members) - {ip} <= set(entry.get("peers", [])):
            return False
    return bool(members)
