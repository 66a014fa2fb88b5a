"""Many hosts at once: a rich progress line per host, then a result table (or ``--json``)."""

from __future__ import annotations

import asyncio
from typing import Any

from hwfleet.bootstrap.install import Job, bootstrap_host

#: Hosts bootstrapped at the same time.
DEFAULT_PARALLEL = 16


async def bootstrap_all(
    job: Job, hosts: list[str], *, show_progress: bool, parallel: int = DEFAULT_PARALLEL
) -> list[dict[str, Any]]:
    limit = asyncio.Semaphore(parallel)
    if not show_progress:

        async def quiet(host: str) -> dict[str, Any]:
            async with limit:
                return await bootstrap_host(job, host, lambda _: None)

        return list(await asyncio.gather(*(quiet(h) for h in hosts)))

    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.fields[host]}"),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=Console(stderr=True, emoji=False),
        transient=True,
    ) as bar:

        async def one(host: str) -> dict[str, Any]:
            task = bar.add_task("waiting", host=host, total=None)
            async with limit:
                result = await bootstrap_host(
                    job, host, lambda step: bar.update(task, description=step)
                )
            bar.update(task, description=result["status"])
            return result

        return list(await asyncio.gather(*(one(h) for h in hosts)))
