"""Machine diagnostics as the API sees them: the latest report each machine sent (seed 002).

The controller's report collector (``mdp_report_listen``) keeps one file per machine in
``<data-dir>/mdp_reports``; this service reads them off the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any


class MdpService:
    """The reports the controller collected; ``collecting`` says whether it listens."""

    def __init__(self, data_dir: str, report_listen: str) -> None:
        self.data_dir = data_dir
        self.collecting = bool(report_listen)

    async def status(self, ip: str | None = None) -> list[dict[str, Any]]:
        """Every machine's latest report (one machine's with ``ip``), by address."""
        from hwfleet.mdp.reports import latest_reports

        reports = await asyncio.to_thread(latest_reports, self.data_dir)
        return [r for r in reports if ip is None or r.get("ip") == ip]
