"""Follow a task with a rich progress bar (percent and ETA)."""

from __future__ import annotations

import time
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from hwfleet.cli.client import ApiClient

TERMINAL = ("complete", "error", "lost")


def follow_task(client: ApiClient, task_id: str, timeout: float, *, quiet: bool) -> dict[str, Any]:
    """Long-poll the task until it ends; the bar shows the agent's percent and ETA."""
    deadline = time.monotonic() + timeout
    task: dict[str, Any] = client.get(f"/api/v1/tasks/{task_id}")
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("eta {task.fields[eta]}"),
        TimeRemainingColumn(),
        disable=quiet,
        transient=False,
    ) as progress:
        bar = progress.add_task(task["method"], total=100, eta="?")
        while task["state"] not in TERMINAL and time.monotonic() < deadline:
            task = client.get(f"/api/v1/tasks/{task_id}", params={"wait": 1.0})
            eta = task.get("eta")
            progress.update(
                bar,
                completed=task.get("percent") or 0,
                eta=f"{eta:.0f}s" if isinstance(eta, int | float) else "?",
            )
        progress.update(bar, completed=task.get("percent") or 0)
    return task
