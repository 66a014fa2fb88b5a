"""The burn-in scan (seed 000, DESIGN §5): one concept, a pipeline in small steps.

``service`` starts a scan, broadcasts on ``devicescan`` and consumes the
replies on ``hwinfo_queue``; each reply is parsed (``replies``), admitted
against the expected set (``identity``), looked up in the MES and scored
(``compare``), and written in batches (``writer``), its events published off
the write path (``announcer``); ``watch`` decides when a scan is done,
``finish`` assembles the deviceScan document and its outbox posts, ``outage``
keeps a briefly unavailable database from failing devices, and ``bridge``
forwards a scan to the agents on the stream carrier. Other packages import the
names below from here; the submodules are the pipeline's own business.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hwfleet._lazy import lazy_exports

if TYPE_CHECKING:
    from hwfleet.controller.scan.bridge import ScanBridge
    from hwfleet.controller.scan.finish import POSTS, idempotency_key
    from hwfleet.controller.scan.identity import legacy_uuid
    from hwfleet.controller.scan.service import ScanService

# Exports resolve on first use (see hwfleet._lazy): a submodule imported on its own does
# not drag the whole pipeline in, and devices.py <-> bridge.py cannot form an import loop.
_EXPORTS = {
    "ScanBridge": "bridge",
    "POSTS": "finish",
    "idempotency_key": "finish",
    "legacy_uuid": "identity",
    "ScanService": "service",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "POSTS",
    "ScanBridge",
    "ScanService",
    "idempotency_key",
    "legacy_uuid",
]
