"""``hwfleet run`` over many devices: batches, a live per-device table, one summary.

Each device gets its own ``POST /devices/{uuid}/run``; a long command's task is
followed to its end (long-polling ``GET /tasks/{id}?wait=``) when the run is
batched or ``--wait`` is given. With ``--batch N`` (or ``N%`` of the selection)
the next batch starts only when every device of the previous one has finished,
and a failure stops the rollout (the rest are ``skipped``) unless
``--continue-on-error``.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from hwfleet.cli.client import ApiClient, CliError
from hwfleet.cli.output import console, table

#: Requests in flight at once, whatever the batch size: the CLI is one operator's client.
MAX_PARALLEL = 32
#: Seconds between redraws of the live table (and the longest wait for a finished device).
REFRESH = 0.25
ENDED = ("complete", "error", "lost", "skipped")


def parse_batch(text: str | None, total: int) -> int:
    """Devices per batch: ``N`` or ``N%`` of ``total`` (at least one); all of them if None."""
    if text is None:
        return max(total, 1)
    raw = text.strip()
    try:
        value = float(raw[:-1]) if raw.endswith("%") else int(raw)
    except ValueError:
        raise CliError(f"--batch {text!r}: give a count (10) or a percentage (10%)") from None
    if value <= 0 or (raw.endswith("%") and value > 100):
        raise CliError(f"--batch {text!r}: must be above 0 (and at most 100%)")
    if raw.endswith("%"):
        return max(1, math.ceil(total * value / 100))
    return int(value)


@dataclass
class Outcome:
    uuid: str
    name: str
    short: str
    state: str = "waiting"
    percent: float | None = None
    msg: str | None = None
    task_id: str | None = None
    result: Any = None
    batch: int = 0
    started: float = field(default=0.0)
    seconds: float | None = None

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "state": self.state, "batch": self.batch}
        for key in ("msg", "task_id", "result", "seconds"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


class Rollout:
    """Runs ``method`` on each device, batch after batch."""

    def __init__(
        self,
        client: ApiClient,
        devices: list[dict[str, Any]],
        method: str,
        params: dict[str, Any],
        *,
        follow: bool,
        timeout: float,
    ) -> None:
        self.client = client
        self.method = method
        self.params = params
        self.follow = follow
        self.timeout = timeout
        self.outcomes = [
            Outcome(d["uuid"], d.get("name") or "", d.get("short") or d["uuid"][:8])
            for d in devices
        ]

    def one(self, outcome: Outcome) -> None:
        outcome.state, outcome.started = "running", time.monotonic()
        try:
            reply = self.client.post(
                f"/api/v1/devices/{outcome.uuid}/run",
                json={"method": self.method, "params": self.params},
            )
            if "result" in reply:
                outcome.state, outcome.result = "complete", reply["result"]
            else:
                self._task(outcome, reply["task"])
        except CliError as exc:
            outcome.state, outcome.msg = "error", str(exc)
        outcome.seconds = round(time.monotonic() - outcome.started, 3)

    def _task(self, outcome: Outcome, task: dict[str, Any]) -> None:
        outcome.task_id = task["id"]
        deadline = time.monotonic() + self.timeout
        while self.follow and task["state"] in ("pending", "running"):
            left = deadline - time.monotonic()
            if left <= 0:
                outcome.msg = "still running when --timeout passed"
                break
            outcome.percent = task.get("percent")
            task = self.client.get(f"/api/v1/tasks/{task['id']}", params={"wait": min(left, 1.0)})
        outcome.percent, outcome.result = task.get("percent"), task.get("result")
        outcome.msg = outcome.msg or task.get("msg")
        outcome.state = "running" if task["state"] == "pending" else task["state"]

    def run(self, size: int, *, keep_going: bool, show: bool) -> None:
        from rich.live import Live

        batches = [self.outcomes[i : i + size] for i in range(0, len(self.outcomes), size)]
        for number, batch in enumerate(batches, 1):
            for outcome in batch:
                outcome.batch = number
        live = Live(self.render(), console=console(), auto_refresh=False) if show else None
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, max(size, 1))) as pool:
            if live is not None:
                live.start()
            try:
                for number, batch in enumerate(batches, 1):
                    pending: set[Future[None]] = {pool.submit(self.one, o) for o in batch}
                    while pending:
                        _, pending = wait(pending, timeout=REFRESH, return_when=FIRST_COMPLETED)
                        if live is not None:
                            live.update(self.render(), refresh=True)
                    failed = any(o.state in ("error", "lost") for o in batch)
                    if failed and not keep_going:
                        for later in batches[number:]:
                            for outcome in later:
                                outcome.state, outcome.msg = "skipped", "an earlier batch failed"
                        break
            finally:
                if live is not None:
                    live.update(self.render(), refresh=True)
                    live.stop()
                    if not live.console.is_terminal:
                        live.console.line()  # a pipe gets the last table without its newline

    def summary(self) -> dict[str, int]:
        counts = {"total": len(self.outcomes)}
        for state in ("complete", "running", "error", "lost", "skipped"):
            counts[state] = sum(1 for o in self.outcomes if o.state == state)
        return counts

    def render(self) -> Any:
        rows = [
            (
                o.short,
                o.name,
                o.batch or "",
                o.state,
                "" if o.percent is None else f"{o.percent:.0f}%",
                "" if o.seconds is None else f"{o.seconds:.1f}s",
                o.msg or "",
            )
            for o in self.outcomes
        ]
        s = self.summary()
        title = (
            f"{self.method} on {s['total']} devices: {s['complete']} complete, "
            f"{s['error'] + s['lost']} failed, {s['skipped']} skipped, {s['running']} running"
        )
        return table(title, ("uuid", "name", "batch", "state", "done", "time", "message"), rows)

    def document(self, expr: str, size: int) -> dict[str, Any]:
        return {
            "expr": expr,
            "method": self.method,
            "batch_size": size,
            "devices": {o.uuid: o.body() for o in self.outcomes},
            "summary": self.summary(),
        }
