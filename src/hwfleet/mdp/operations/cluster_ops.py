"""What this machine knows about its cluster."""

from __future__ import annotations

from typing import Any

from hwfleet.mdp.operations import OperationContext


def cluster_status(ctx: OperationContext) -> dict[str, Any]:
    """The cluster this machine was told about (members, modes) and the last folder sync to
    each peer (ok, seconds, error)."""
    sync = ctx.state.get("sync")
    return {
        "cluster": ctx.state.get("cluster", {}),
        "sync_rounds": getattr(sync, "rounds", 0),
        "last_sync": dict(getattr(sync, "last", {})),
    }
