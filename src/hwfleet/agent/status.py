"""The device's one status rule (DESIGN §7, seed 004): ``st_id``, ``st_ts``, ``st_prog``.

The runtime owns one :class:`StatusTracker` and tells it what the device is
doing — a long task's progress and end, a scan, maintenance, an error — and
every report (``handshake``, ``status``, discovery replies) reads it:

- a running task: 16 with ``st_prog`` (0 to 100);
- a task that ended: 64 (completed) or 128 (aborted, with ``error_label``),
  shown until the next task starts;
- a scan in progress: -2; maintenance (an operator's ``device.maintenance``): -1;
- otherwise 0 (idle).

Precedence when several hold at once: maintenance (-1), then scanning (-2),
then the task's state, then idle. Maintenance wins because it is the operator's
word that nobody should use the device; a scan that is answered meanwhile is a
read, not a use.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import msgspec

from hwfleet.discovery.metadata import DeviceMetadata
from hwfleet.protocol.errors import ErrorCode, MethodError
from hwfleet.protocol.status import StatusId


class Status(msgspec.Struct, frozen=True):
    st_id: int
    st_ts: float
    st_prog: float | None
    head_module: str | None
    error_label: str | None


class StatusTracker:
    """Computes the status fields from what the runtime reports.

    ``on_change`` runs when ``st_id`` or ``error_label`` changes (the moment worth an
    unsolicited announcement); progress ticks within a running task only move ``st_ts``.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._clock = clock
        self.on_change = on_change
        self._task: StatusId | None = None
        self._progress: float | None = None
        self._head_module: str | None = None
        self._scanning = False
        self._maintenance = False
        self._error: str | None = None
        self._status = Status(int(StatusId.IDLE), clock(), None, None, None)

    @property
    def status(self) -> Status:
        return self._status

    def set_task_progress(self, percent: float, *, head_module: str | None = None) -> None:
        """A task is running and ``percent`` (0 to 100) done: status 16, st_prog = percent."""
        if not math.isfinite(percent):
            raise ValueError(f"progress {percent!r} is not a number")
        self._task = StatusId.RUNNING
        self._progress = min(100.0, max(0.0, float(percent)))
        if head_module is not None:
            self._head_module = head_module
        self._error = None
        self._update()

    def task_completed(self) -> None:
        """The task finished: status 64 (completed) until the next task starts."""
        self._task = StatusId.COMPLETED
        self._progress = 100.0
        self._update()

    def set_scanning(self, scanning: bool) -> None:
        self._scanning = scanning
        self._update()

    @property
    def maintenance(self) -> bool:
        return self._maintenance

    def set_maintenance(self, maintenance: bool) -> None:
        self._maintenance = maintenance
        self._update()

    def set_error(self, label: str | None) -> None:
        """A task error (the task ends as aborted, 128), or ``None`` to clear the label."""
        self._error = label
        if label is not None and self._task in (StatusId.RUNNING, StatusId.COMPLETED):
            self._task = StatusId.ABORTED
        self._update()

    def refuse_in_maintenance(self, what: str) -> None:
        """Long tasks and scans are refused while an operator holds the device in maintenance."""
        if self._maintenance:
            raise MethodError(
                f"{what}: the device is in maintenance; "
                "take it out first (hwfleet device maintenance off UUID)",
                ErrorCode.REFUSED,
            )

    def apply(self, meta: DeviceMetadata) -> DeviceMetadata:
        """``meta`` with the current status fields."""
        s = self._status
        return msgspec.structs.replace(
            meta,
            st_id=s.st_id,
            st_ts=s.st_ts,
            st_prog=s.st_prog,
            head_module=s.head_module,
            error_label=s.error_label,
        )

    def _compute(self) -> tuple[int, float | None, str | None]:
        if self._maintenance:
            return int(StatusId.MAINTENANCE), None, None
        if self._scanning:
            return int(StatusId.SCANNING), None, None
        if self._task is StatusId.RUNNING:
            return int(StatusId.RUNNING), self._progress, self._head_module
        if self._task is not None:
            return int(self._task), self._progress, None
        return int(StatusId.IDLE), None, None

    def _update(self) -> None:
        st_id, prog, head = self._compute()
        old = self._status
        if (st_id, prog, head, self._error) == (
            old.st_id,
            old.st_prog,
            old.head_module,
            old.error_label,
        ):
            return
        self._status = Status(st_id, self._clock(), prog, head, self._error)
        if (st_id, self._error) != (old.st_id, old.error_label) and self.on_change is not None:
            self.on_change()
