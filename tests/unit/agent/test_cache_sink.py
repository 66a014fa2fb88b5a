"""The cache's partial-file writes: aligned buffers around the page cache, the rest buffered."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from hwfleet.agent.imaging.cache import DIRECT_ALIGN, _open_direct, _Sink

MIB = 1024 * 1024


def test_aligned_and_unaligned_writes_land_where_they_belong(tmp_path: Path) -> None:
    path = tmp_path / "x.partial"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    direct = _open_direct(path)
    assert direct is not None  # the test's filesystem takes O_DIRECT (ext4, tmpfs >= 6.6)
    sink = _Sink(fd, direct)
    data = os.urandom(2 * MIB + DIRECT_ALIGN + 123)
    buf = mmap.mmap(-1, 2 * MIB)
    try:
        # Two whole buffers (direct), then an unaligned tail (buffered), out of order.
        tail_at = 2 * MIB
        tail = data[tail_at:]
        buf[: len(tail)] = tail
        sink.write(buf, tail_at, len(tail))
        for at in (MIB, 0):
            buf[:MIB] = data[at : at + MIB]
            sink.write(buf, at, MIB)
        os.fsync(fd)
        assert sink.direct is direct
        assert path.read_bytes() == data
    finally:
        os.close(fd)
        os.close(direct)
