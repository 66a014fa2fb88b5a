"""A cache download cut mid-transfer resumes with a range request and ends verified.

The connection runs through :mod:`tests.tcp_proxy` in front of the controller's real
mTLS image server; the proxy resets it (RST) once the agent's cache holds a few MiB.
The first ``fetch`` fails naming the cut and keeps its ``.partial`` (no valid-looking
entry); the second asks only for the rest (``Range``) and the entry it leaves hashes
to the registry's digests (checked by blake3, the resumed part re-hashed first).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.integration.imaging.conftest import MIB, image_port
from tests.integration.imaging.enroll import enrolled_identity
from tests.tcp_proxy import tcp_proxy

from hwfleet.agent.hardware.erase import _Progress
from hwfleet.agent.imaging.cache import ImageCache
from hwfleet.agent.imaging.source import ImageClient, ImageSourceError
from hwfleet.controller.app import Controller
from hwfleet.trust.tls import enrolled_context

SIZE = 64 * MIB
CUT_AT = 4 * MIB


@dataclass
class HeldProgress(_Progress):
    """Counts what ``fetch`` reports; once ``hold_at`` bytes arrived, waits for ``go``."""

    hold_at: int = 0
    reached: threading.Event = field(default_factory=threading.Event)
    go: threading.Event = field(default_factory=threading.Event)
    calls: list[int] = field(default_factory=list)

    def add(self, count: int) -> None:
        super().add(count)
        self.calls.append(count)
        if self.hold_at and self.done >= self.hold_at and not self.reached.is_set():
            self.reached.set()
            assert self.go.wait(30), "the test never cut the connection"


def progress(hold_at: int = 0) -> HeldProgress:
    return HeldProgress(
        loop=asyncio.get_running_loop(),
        total=SIZE,
        changed=asyncio.Event(),
        stop=threading.Event(),
        started=time.monotonic(),
        hold_at=hold_at,
    )


async def test_a_cut_download_resumes_and_verifies(controller: Controller, tmp_path: Path) -> None:
    image = tmp_path / "big.raw"
    data = os.urandom(SIZE)
    image.write_bytes(data)

    async def chunks():  # type: ignore[no-untyped-def]
        for offset in range(0, SIZE, 4 * MIB):
            yield data[offset : offset + 4 * MIB]

    record = await controller.images.add(chunks(), "resume")
    identity = await enrolled_identity(controller, tmp_path / "device")
    cache = ImageCache(tmp_path / "cache")
    async with tcp_proxy("127.0.0.1", image_port(controller)) as proxy:
        client = ImageClient("127.0.0.1", proxy.port, enrolled_context(identity))
        meta = await asyncio.to_thread(client.meta, record.id)

        first = progress(hold_at=CUT_AT)
        fetch = asyncio.ensure_future(asyncio.to_thread(cache.fetch, client, meta, first))
        assert await asyncio.to_thread(first.reached.wait, 30)
        await proxy.cut()
        first.go.set()
        with pytest.raises(ImageSourceError, match=r"cut off|truncated"):
            await fetch
        partial = tmp_path / "cache" / f"{record.id}.partial"
        kept = partial.stat().st_size
        assert CUT_AT <= kept < SIZE, kept
        assert cache.lookup(record.id) is None  # nothing that looks like a valid entry

        await proxy.restore()
        second = progress()
        await asyncio.to_thread(cache.fetch, client, meta, second)
    # The first report is the re-hashed partial; only the rest came over the wire.
    assert second.calls[0] == kept
    assert sum(second.calls[1:]) == SIZE - kept
    entry = cache.lookup(record.id)
    assert entry is not None
    assert hashlib.sha256(entry[1].read_bytes()).hexdigest() == record.sha256
    assert meta.digest.algorithm == "blake3" and entry[0].blake3 == record.blake3
    assert entry[1].read_bytes() == data
    assert not partial.exists()
