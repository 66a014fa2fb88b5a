"""The root of hwfleet's exceptions: catch :class:`HwfleetError` to catch any of ours."""

from __future__ import annotations


class HwfleetError(Exception):
    """Every exception hwfleet defines derives from this."""


class ConflictError(HwfleetError):
    """The request is valid but the current state forbids it (another run is in progress)."""


class ScanRunningError(ConflictError):
    """A scan is running already: a second one would post to the MES beside it."""

    def __init__(self, operationid: int) -> None:
        super().__init__(
            f"scan {operationid} is still running: follow it with "
            f"`hwfleet scan show {operationid} --wait`, and start a new one when it ends"
        )
        self.operationid = operationid
