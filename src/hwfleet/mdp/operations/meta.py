"""Operations about the endpoint itself: what it offers and what it has dropped."""

from __future__ import annotations

from typing import Any

from hwfleet.mdp.operations import OperationContext


def get_available_methods(ctx: OperationContext) -> dict[str, str]:
    """Every operation this machine answers, with its help text (its docstring)."""
    return ctx.operations.help()


def endpoint_stats(ctx: OperationContext) -> dict[str, Any]:
    """Datagrams received, answered and dropped by reason (wrong key, replay, stale, ...)."""
    return dict(ctx.counters)
