"""What happens next in a graph, from its task rows alone (pure: no I/O, unit-tested).

A pending task becomes *ready* when every ``waitOn`` entry is met; it is *skipped*
(``cancelled``, reason "skipped") when one can no longer be met. The graph is done
when no task is pending or running: ``failed`` if a task failed (or timed out, or
was cancelled other than by skipping) without ``ignoreFailure``, else ``succeeded``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hwfleet.workflows.definitions import FINISHED

SKIPPED = "skipped: its waitOn can no longer be met"


@dataclass(frozen=True, slots=True)
class TaskView:
    id: str
    label: str
    state: str
    ready: bool
    wait_on: dict[str, str]
    ignore_failure: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    ready: list[str]
    skipped: list[str]
    #: The graph's final status, or None while it runs.
    graph_status: str | None


def _met(want: str, state: str) -> bool | None:
    """True: met; False: can never be met; None: not yet known."""
    if state not in FINISHED:
        return None
    if want == "finished":
        return True
    return state == want


def plan(tasks: Iterable[TaskView]) -> Plan:
    """Resolve readiness to a fixed point (a skip can unblock or skip others)."""
    states = {t.label: t.state for t in tasks}
    views = list(tasks)
    ready: list[str] = []
    skipped: list[str] = []
    changed = True
    while changed:
        changed = False
        for task in views:
            if states[task.label] != "pending" or task.id in ready:
                continue
            verdicts = [_met(want, states[other]) for other, want in task.wait_on.items()]
            if any(v is False for v in verdicts):
                states[task.label] = "cancelled"
                skipped.append(task.id)
                changed = True
            elif all(v is True for v in verdicts) and not task.ready:
                ready.append(task.id)
    if any(s in ("pending", "running") for s in states.values()):
        return Plan(ready, skipped, None)
    skipped_ids = set(skipped)
    failed = any(
        states[t.label] in ("failed", "timeout", "cancelled")
        and not t.ignore_failure
        and t.id not in skipped_ids
        and not (t.state == "cancelled" and (t.error or "").startswith("skipped"))
        for t in views
    )
    return Plan(ready, skipped, "failed" if failed else "succeeded")
