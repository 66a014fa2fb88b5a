"""One host: connect (verified), detect, push wheels, install, write the service, start, enrol.

Idempotent: the target keeps ``installed.json`` with a digest of the wheels, the service
definition and the agent settings; a run that finds the same digest, an enrolled agent
and a running service changes nothing and reports ``unchanged``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwfleet.bootstrap import cluster, remote
from hwfleet.bootstrap.hostkeys import HostKeyError, HostKeyPolicy
from hwfleet.bootstrap.sudo import as_root, push
from hwfleet.bootstrap.units import SERVICE, Layout, agent_config, systemd_unit, sysvinit_script
from hwfleet.bootstrap.wheels import wheel_files

#: Python the agent needs on the target.
MIN_PYTHON = (3, 11)


@dataclass(slots=True)
class Job:
    """What to do to every host."""

    controller: str
    data_dir: str
    wheelhouse: Path
    hostkeys: HostKeyPolicy
    make_token: Callable[[], Awaitable[str]]
    user: str = "root"
    port: int = 22
    identity: str | None = None
    layout: Layout = field(default_factory=Layout)
    agent_settings: dict[str, object] = field(default_factory=dict)
    enroll_timeout: float = 120.0
    init: str = "auto"
    #: ``--cluster-sync``: install the folder-sync SSH trust among the hosts (bootstrap.cluster).
    cluster_folder: str | None = None

    def settings(self) -> dict[str, object]:
        """The agent's settings as written to its config (cluster sync adds its file)."""
        return cluster.agent_settings(self.layout, self.cluster_folder, self.agent_settings)


def connect(job: Job, host: str, known: str | None) -> Any:
    """An asyncssh connection to ``host`` checked against ``known`` (None: accept any key,
    for first use only; the caller records it)."""
    import asyncssh

    return asyncssh.connect(
        host,
        port=job.port,
        username=job.user,
        client_keys=[job.identity] if job.identity else (),
        known_hosts=known,
        agent_path=None,
    )


async def bootstrap_host(job: Job, host: str, progress: Callable[[str], None]) -> dict[str, Any]:
    import asyncssh

    started = time.monotonic()
    out: dict[str, Any] = {"host": host, "status": "failed"}
    known, first_use = job.hostkeys.for_host(host, job.port)
    progress("connecting")
    connected = False
    try:
        async with connect(job, host, known) as conn:
            connected = True
            key = conn.get_server_host_key()
            if first_use and key is not None:
                out["host_key"] = job.hostkeys.remember(host, job.port, key)
                out["first_use"] = True
            elif key is not None:
                out["host_key"] = key.get_fingerprint("sha256")
            root = await as_root(conn, job.user)
            await _install(job, root, host, out, progress)
            if job.cluster_folder:
                progress("cluster key")
                out["cluster_identity"] = await cluster.identity(
                    root, job.layout, job.cluster_folder, key
                )
    except asyncssh.HostKeyNotVerifiable as exc:
        out["error"] = f"host key refused: {exc} — it does not match the recorded key"
    except OSError as exc:  # before the session, say where it tried, not just the errno
        reason = exc.strerror or str(exc) or type(exc).__name__
        out["error"] = reason if connected else f"cannot reach SSH at {host}:{job.port}: {reason}"
    except (asyncssh.Error, remote.RemoteError, HostKeyError, ValueError) as exc:
        out["error"] = str(exc) or type(exc).__name__
    out["seconds"] = round(time.monotonic() - started, 2)
    return out


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


async def _install(job: Job, conn: Any, host: str, out: dict[str, Any],
                   progress: Callable[[str], None]) -> None:  # fmt: skip
    lay = job.layout
    progress("detecting")
    target = await remote.detect(conn)
    out.update(distro=f"{target.distro} {target.version}".strip(), python=target.python)
    if target.python_version[:2] < MIN_PYTHON:
        raise remote.RemoteError(f"{target.python} is {target.python_version}; need 3.11+")
    init = target.init if job.init == "auto" else job.init
    out["init"] = init
    if init == "systemd":
        service = systemd_unit(lay, job.controller)
    else:
        service = sysvinit_script(lay, job.controller)
    config = agent_config(job.controller, job.settings(), lay)
    wheels = wheel_files(job.wheelhouse)
    digest = _digest(json.dumps(wheels, sort_keys=True), service, config)
    state = await remote.run(conn, ["cat", lay.state], check=False)
    enrolled = await _enrolled(conn, lay)
    running = await _running(conn, lay, init)
    if _same(state, digest) and enrolled and running:
        out.update(status="unchanged", uuid=await _uuid(conn, lay))
        await _record_key(job, conn, host, out)
        return
    progress("pushing wheels")
    await remote.run(conn, ["mkdir", "-p", lay.wheels, lay.data_dir])
    have = await remote.run(conn, ["sh", "-c", f"cd {lay.wheels} && stat -c '%n %s' *.whl"],
                            check=False)  # fmt: skip
    pairs = (line.rsplit(" ", 1) for line in have.splitlines() if " " in line)
    present = {name: int(size) for name, size in pairs if size.isdigit()}
    missing = [job.wheelhouse / n for n, size in wheels.items() if present.get(n) != size]
    if missing:
        await push(conn, [str(p) for p in missing], lay.wheels)
    progress("installing")
    venv_python = f"{lay.venv}/bin/python"
    if not await _ok(conn, ["test", "-x", venv_python]):
        await remote.run(conn, [target.python, "-m", "venv", lay.venv])
    hwfleet_wheel = next(n for n in wheels if n.startswith("hwfleet-"))
    await remote.run(conn, [venv_python, "-m", "pip", "install", "-q", "--no-index",
                            "--disable-pip-version-check", "--find-links", lay.wheels,
                            f"{lay.wheels}/{hwfleet_wheel}"])  # fmt: skip
    token_config = config
    if not enrolled:
        token = await job.make_token()
        token_config = agent_config(job.controller, {**job.settings(), "enroll_token": token},
                                    lay)  # fmt: skip
    await _write(conn, lay.config, token_config, 0o600)
    progress("service")
    if init == "systemd":
        await _write(conn, lay.unit_path, service, 0o644)
        await remote.run(conn, ["systemctl", "daemon-reload"])
        await remote.run(conn, ["systemctl", "enable", SERVICE])
        await remote.run(conn, ["systemctl", "restart", SERVICE])
    else:
        await _write(conn, lay.init_script, service, 0o755)
        if lay.root == "/":
            await remote.run(conn, ["sh", "-c", f"command -v update-rc.d && update-rc.d {SERVICE} "
                                    "defaults"], check=False)  # fmt: skip
        await remote.run(conn, [lay.init_script, "restart" if running else "start"])
    progress("enrolling")
    await _wait_enrolled(conn, lay, job.enroll_timeout)
    await _write(conn, lay.state, json.dumps({"digest": digest}), 0o600)
    out.update(status="updated" if state.strip() else "installed", uuid=await _uuid(conn, lay))
    await _record_key(job, conn, host, out)


def _same(state: str, digest: str) -> bool:
    try:
        return bool(json.loads(state)["digest"] == digest)
    except (ValueError, KeyError, TypeError):
        return False


async def _ok(conn: Any, argv: list[str]) -> bool:
    import shlex

    result = await conn.run(" ".join(shlex.quote(a) for a in argv), check=False)
    return bool(result.exit_status == 0)


async def _enrolled(conn: Any, lay: Layout) -> bool:
    pki = f"{lay.data_dir}/pki"
    return await _ok(conn, ["test", "-f", f"{pki}/agent.crt"]) and await _ok(
        conn, ["test", "-f", f"{pki}/controller-ca.crt"]
    )


async def _running(conn: Any, lay: Layout, init: str) -> bool:
    if init == "systemd":
        return await _ok(conn, ["systemctl", "is-active", "--quiet", SERVICE])
    return await _ok(conn, [lay.init_script, "status"])


async def _uuid(conn: Any, lay: Layout) -> str:
    text = await remote.run(conn, ["cat", f"{lay.data_dir}/agent.json"], check=False)
    try:
        return str(json.loads(text)["uuid"])
    except (ValueError, KeyError, TypeError):
        return ""


async def _write(conn: Any, path: str, text: str, mode: int) -> None:
    """Write ``path`` on the target with ``mode`` from the first byte (umask 077 first)."""
    await remote.run(conn, ["mkdir", "-p", str(Path(path).parent)])
    result = await conn.run(
        f"umask 077 && cat > {path}.tmp && chmod {mode:o} {path}.tmp && mv {path}.tmp {path}",
        input=text,
        check=False,
    )
    if result.exit_status != 0:
        raise remote.RemoteError(f"cannot write {path}: {str(result.stderr).strip()}")


async def _wait_enrolled(conn: Any, lay: Layout, timeout: float) -> None:
    """The agent's certificate appears once the controller accepted its token."""
    deadline = time.monotonic() + timeout
    while not await _enrolled(conn, lay):
        if time.monotonic() > deadline:
            raise remote.RemoteError(
                f"the agent did not enrol within {timeout:g} s (is the controller reachable "
                f"from the target? see {lay.data_dir} and the service's log)"
            )
        await asyncio.sleep(0.5)  # the state is on another machine: poll it, with a deadline


async def _record_key(job: Job, conn: Any, host: str, out: dict[str, Any]) -> None:
    """Bootstrap's SSH session is authenticated: take custody of the diagnostics key."""
    import socket

    from hwfleet.mdp.keys import KnownMachines, parse_key

    text = await remote.run(conn, ["cat", f"{job.layout.data_dir}/mdp.key"], check=False)
    if text.strip():
        ip = socket.gethostbyname(host)
        KnownMachines(job.data_dir).put(ip, parse_key(text, f"{host}:mdp.key"))
        out["mdp_key"] = "recorded"
