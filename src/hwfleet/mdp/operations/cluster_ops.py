"""What this machine knows about its cluster, and the SSH trust its folder sync needs."""

from __future__ import annotations

import asyncio
from typing import Any

from hwfleet.mdp.operations import OperationContext, OperationError

#: Peers one cluster_trust request may carry (the request must fit in a datagram).
MAX_TRUST_PEERS = 8


def cluster_status(ctx: OperationContext) -> dict[str, Any]:
    """The cluster this machine was told about (members, modes), the last folder sync from
    each peer (ok, seconds, error), the rounds done and the files deleted by tombstones."""
    sync = ctx.state.get("sync")
    return {
        "cluster": ctx.state.get("cluster", {}),
        "sync_rounds": getattr(sync, "rounds", 0),
        "deleted": getattr(sync, "deleted", 0),
        "last_sync": dict(getattr(sync, "last", {})),
    }


def _sync_config(ctx: OperationContext) -> Any:
    config = getattr(ctx.state.get("sync"), "config", None)
    if config is None:
        raise OperationError("folder sync is off on this machine")
    return config


async def cluster_identity(ctx: OperationContext) -> dict[str, Any]:
    """This machine's public folder-sync SSH key (made at first use), its sshd host key and
    whether rrsync is installed (then peers get read-only access to the folder only)."""
    from hwfleet.mdp import trust

    config = _sync_config(ctx)
    try:
        ssh_key = await asyncio.to_thread(trust.ensure_key, config.ssh_key)
        host_key = trust.host_key(config.host_key)
    except (OSError, trust.TrustError) as exc:
        raise OperationError(str(exc)) from None
    return {"ssh_key": ssh_key, "host_key": host_key, "rrsync": trust.rrsync() is not None}


async def cluster_trust(
    ctx: OperationContext, folder: str = "", peers: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Let `peers` ({ip: cluster_identity's result}, at most 8 a request) read `folder`
    over SSH (authorized_keys: rrsync -ro FOLDER, restrict, from=ip) and record their host
    keys for this machine's pulls. Version "2" requests only."""
    from hwfleet.mdp import trust

    config = _sync_config(ctx)
    if not isinstance(peers, dict) or not 0 < len(peers) <= MAX_TRUST_PEERS:
        raise OperationError(f"peers must map 1 to {MAX_TRUST_PEERS} addresses to identities")
    if not all(isinstance(v, dict) for v in peers.values()):
        raise OperationError("each peer needs {ssh_key, host_key, rrsync}")
    sync = ctx.state["sync"]
    try:
        how = await asyncio.to_thread(
            trust.trust_peers,
            authorized_keys=config.authorized_keys,
            known_hosts=config.known_hosts,
            folder=str(folder),
            peers=peers,
        )
    except (OSError, trust.TrustError) as exc:
        raise OperationError(str(exc)) from None
    for ip, ident in peers.items():
        if ident.get("rrsync"):
            sync.rrsync_peers.add(ip)
        else:
            sync.rrsync_peers.discard(ip)
    return {"trusted": how}
