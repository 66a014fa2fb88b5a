"""Many hosts at once: a rich progress line per host, then a result table (or ``--json``).

With ``--cluster-sync`` a second round follows once every host is installed: each one that
succeeded is made to trust the others' sync keys (hwfleet.bootstrap.cluster), over a new
SSH session verified against the host key the first round recorded.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hwfleet.bootstrap import cluster, remote
from hwfleet.bootstrap.install import Job, bootstrap_host, connect
from hwfleet.bootstrap.sudo import as_root

#: Hosts bootstrapped at the same time.
DEFAULT_PARALLEL = 16


async def bootstrap_all(
    job: Job, hosts: list[str], *, show_progress: bool, parallel: int = DEFAULT_PARALLEL
) -> list[dict[str, Any]]:
    results = await _install_all(job, hosts, show_progress=show_progress, parallel=parallel)
    if job.cluster_folder:
        await trust_round(job, results, asyncio.Semaphore(parallel))
    return results


async def trust_round(job: Job, results: list[dict[str, Any]], limit: asyncio.Semaphore) -> None:
    """Every host that got an identity trusts every other one; result ``cluster_trust``."""
    import asyncssh

    assert job.cluster_folder is not None
    folder_arg = job.cluster_folder
    folder = job.layout.at(folder_arg)
    members: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for result in results:
        ident = result.pop("cluster_identity", None)
        if ident is not None:
            members[cluster.address(result["host"])] = (result, ident)

    async def one(ip: str, result: dict[str, Any], ident: dict[str, Any]) -> None:
        peers = {p: i for p, (_, i) in members.items() if p != ip}
        if not peers:  # a cluster of one: its key is made, nothing to trust yet
            cluster.record(job.data_dir, folder, ip, ident, [])
            result["cluster_trust"] = "no peers"
            return
        known, first_use = job.hostkeys.for_host(result["host"], job.port)
        try:
            if first_use:  # the first round recorded it; a missing record is not trusted
                raise remote.RemoteError("host key not recorded by the first round")
            async with limit, connect(job, result["host"], known) as conn:
                root = await as_root(conn, job.user)
                done = await cluster.trust(root, job.layout, folder_arg, job.settings(), peers)
        except (asyncssh.Error, OSError, remote.RemoteError, ValueError) as exc:
            result.update(status="failed", cluster_trust="failed",
                          error=f"cluster trust: {exc or type(exc).__name__}")  # fmt: skip
            return
        cluster.record(job.data_dir, folder, ip, ident, list(peers))
        result["cluster_trust"] = "installed" if done["changed"] else "unchanged"
        result["cluster_peers"] = sorted(peers)

    await asyncio.gather(*(one(ip, r, i) for ip, (r, i) in members.items()))


async def _install_all(
    job: Job, hosts: list[str], *, show_progress: bool, parallel: int
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
