"""The agent's one status rule: st_id / st_ts / st_prog follow the device's state (DESIGN §7)."""

from __future__ import annotations

import pytest

from hwfleet.agent.status import StatusTracker
from hwfleet.discovery import DeviceMetadata
from hwfleet.protocol.status import StatusId


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_status_follows_task_scan_maintenance_and_errors() -> None:
    changes: list[int] = []
    tracker = StatusTracker(clock=Clock())
    tracker.on_change = lambda: changes.append(tracker.status.st_id)
    assert tracker.status.st_id == StatusId.IDLE and tracker.status.st_prog is None

    tracker.set_task_progress(12.5, head_module="eraser")
    s = tracker.status
    assert (s.st_id, s.st_prog, s.head_module) == (16, 12.5, "eraser")
    ts = s.st_ts
    tracker.set_task_progress(40)
    assert tracker.status.st_prog == 40 and tracker.status.st_ts > ts
    assert changes == [16], "progress ticks do not trigger announcements"

    tracker.set_scanning(True)
    assert tracker.status.st_id == -2 and tracker.status.st_prog is None
    tracker.set_maintenance(True)
    assert tracker.status.st_id == -1, "maintenance wins over scanning"
    tracker.set_maintenance(False)
    tracker.set_scanning(False)
    assert tracker.status.st_id == 16 and tracker.status.st_prog == 40, "the task resumes showing"

    tracker.task_completed()
    assert (tracker.status.st_id, tracker.status.st_prog) == (64, 100.0)
    assert tracker.status.head_module is None, "head_module appears only while running"
    assert changes == [16, -2, -1, -2, 16, 64]


def test_error_aborts_the_task_and_is_labelled() -> None:
    tracker = StatusTracker()
    tracker.set_task_progress(50)
    tracker.set_error("disk /dev/sdb did not erase")
    s = tracker.status
    assert s.st_id == StatusId.ABORTED and s.error_label == "disk /dev/sdb did not erase"
    tracker.set_error(None)
    assert tracker.status.error_label is None and tracker.status.st_id == StatusId.ABORTED
    tracker.set_task_progress(1)
    assert tracker.status.st_id == StatusId.RUNNING


def test_progress_is_clamped_and_must_be_a_number() -> None:
    tracker = StatusTracker()
    tracker.set_task_progress(150)
    assert tracker.status.st_prog == 100.0
    with pytest.raises(ValueError, match="not a number"):
        tracker.set_task_progress(float("nan"))


def test_apply_copies_status_into_metadata() -> None:
    tracker = StatusTracker(clock=lambda: 4242.0)
    tracker.set_task_progress(33)
    meta = tracker.apply(
        DeviceMetadata(
            uuid="00000000-0000-0000-0000-000000000001",
            name="rack-1",
            serial=1001,
            model_id="x86-burnin",
            version="0.1.0",
            ipaddr="127.1.0.1",
            endpoint=("127.1.0.1", 12345),
        )
    )
    assert (meta.st_id, meta.st_ts, meta.st_prog) == (16, 4242.0, 33.0)
    assert meta.name == "rack-1"
