"""Device status ids (seed 004, corrected against fluxclient's source; DESIGN §7)."""

from __future__ import annotations

from enum import IntEnum


class StatusId(IntEnum):
    """What a device is doing, as discovery and ``status`` report it."""

    IDLE = 0
    INIT = 1
    STARTING = 4
    RESUMING = 6
    RESUMING_FROM_PAUSE = 18
    RUNNING = 16
    PAUSED = 36
    PAUSED_FROM_RUNNING = 48
    PAUSING = 38
    PAUSING_FROM_RUNNING = 50
    COMPLETED = 64
    COMPLETING = 66
    ABORTED = 128
    ABORTING = 130
    MAINTENANCE = -1
    SCANNING = -2


def describe(st_id: int) -> str:
    """A short human label for a status id (unknown ids are shown as numbers)."""
    try:
        return StatusId(st_id).name.split("_FROM_")[0].lower()
    except ValueError:
        return f"status {st_id}"
