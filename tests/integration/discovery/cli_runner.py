"""Run ``hwfleet discover`` as an operator would: a real process probing real UDP sockets."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hwfleet.discovery import DeviceMetadata, DiscoveryResponder

HWFLEET = str(Path(sys.executable).with_name("hwfleet"))


@dataclass(frozen=True)
class Run:
    returncode: int
    out: str
    err: str


async def run_discover(args: list[str], env: Mapping[str, str], timeout: float = 30) -> Run:
    """``hwfleet discover ARGS`` with ``env`` added to a copy of this environment."""
    proc = await asyncio.create_subprocess_exec(
        HWFLEET,
        "discover",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "400", **env},
    )
    async with asyncio.timeout(timeout):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


@dataclass(frozen=True)
class Claimant:
    """A responder to be: what it announces, where, and with which key (None: unsigned)."""

    meta: Callable[[], DeviceMetadata]
    address: str
    key: Ed25519PrivateKey | None


async def discover_spoofer_first(
    spoofer: Claimant, real: Claimant, port: int, args: list[str], env: Mapping[str, str]
) -> Run:
    """``hwfleet discover --probe SPOOFER --probe REAL ARGS`` with the spoofer answering
    first: the real device starts only once the spoofer answered, and the browser's
    retry of the silent address finds it."""
    answered = asyncio.Event()

    def spoofer_meta() -> DeviceMetadata:
        answered.set()
        return spoofer.meta()

    responders = [
        DiscoveryResponder(
            spoofer_meta, bind=spoofer.address, port=port, group=None, signing_key=spoofer.key
        )
    ]
    await responders[0].start()
    probe = ["--probe", spoofer.address, "--probe", real.address, "--port", str(port)]
    try:
        command = asyncio.create_task(run_discover([*probe, *args], env))
        async with asyncio.timeout(15):
            await answered.wait()
        responders.append(
            DiscoveryResponder(
                real.meta, bind=real.address, port=port, group=None, signing_key=real.key
            )
        )
        await responders[1].start()
        return await command
    finally:
        for responder in responders:
            await responder.close()
