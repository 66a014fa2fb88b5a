"""``GET /api/v1/retention``: the retention settings and what the pruner deleted.

The controller's pruner (:mod:`hwfleet.controller.retention`) keeps its counts in a
:class:`RetentionReport` it shares with this router; the API reads, never prunes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request

from hwfleet.api.auth import require_token
from hwfleet.api.deps import lookup

router = APIRouter(prefix="/api/v1", tags=["retention"], dependencies=[Depends(require_token)])


@dataclass
class RetentionReport:
    """This replica's pruner: its settings, its last run, and totals since it started."""

    events_days: float
    tasks_days: float
    interval: float
    last: dict[str, int] = field(default_factory=dict)
    last_at: datetime | None = None
    total: dict[str, int] = field(default_factory=lambda: {"events": 0, "tasks": 0})
    runs: int = 0

    def record(self, counts: dict[str, int], at: datetime) -> None:
        self.last, self.last_at, self.runs = dict(counts), at, self.runs + 1
        for key, value in counts.items():
            self.total[key] = self.total.get(key, 0) + value

    def body(self) -> dict[str, Any]:
        return {
            "enabled": bool(self.events_days or self.tasks_days),
            "events_days": self.events_days,
            "tasks_days": self.tasks_days,
            "interval_seconds": self.interval,
            "runs": self.runs,
            "last_run_at": None if self.last_at is None else self.last_at.isoformat(),
            "last": self.last,
            "total": self.total,
        }


@router.get("/retention")
async def retention(request: Request) -> dict[str, Any]:
    """Retention settings (days; 0: kept for ever) and the pruned counts of this replica."""
    report = lookup(request, RetentionReport, "this controller runs no retention pruner")
    return report.body()
