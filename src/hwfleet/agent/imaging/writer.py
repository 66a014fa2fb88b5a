"""Stream an image onto a block device: decompress, hash, aligned direct writes, read back.

Two threads share a few page-aligned buffers (anonymous ``mmap``): the producer
reads the source, hashes it, decompresses into a buffer and hands the full
buffer over; the writer thread ``pwrite``\\s it with ``O_DIRECT`` (no page
cache: memory stays flat however large the image) while the producer fills the
next one. Both ``hashlib`` and ``pwrite`` release the GIL, so hashing overlaps
the I/O. A tail that is not a whole sector goes through an ordinary descriptor.

Verification reads the written bytes back (``O_DIRECT`` again, so the device
answers, not the cache) and compares their sha256 with what was written; the
source's own sha256 is checked against the registry's as it streams.

The target is checked with the very function ``decom.disk_erase`` uses
(:func:`hwfleet.agent.hardware.protect.inspect_target`) and claimed with
``O_EXCL`` like the erase, so every device the erase refuses is refused here too.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hwfleet.agent.hardware.erase import _open_exclusive, _Progress
from hwfleet.agent.hardware.protect import BlockTarget
from hwfleet.errors import DeviceError
from hwfleet.images.formats import ImageFormatError, decompressor

MIB = 1024 * 1024
BUFFER = 8 * MIB
BUFFERS = 3
SECTOR = 512


class ImageWriteError(DeviceError):
    """Writing the image failed: the message names the cause."""


@dataclass
class WriteResult:
    device: str
    bytes_written: int
    sha256: str
    verified: bool

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _buffers() -> list[mmap.mmap]:
    return [mmap.mmap(-1, BUFFER) for _ in range(BUFFERS)]


class _Writer(threading.Thread):
    """Writes the buffers the producer queues; the first error stops it and is kept."""

    def __init__(self, fd: int, free: queue.Queue[mmap.mmap]) -> None:
        super().__init__(name="image-writer", daemon=True)
        self.fd = fd
        self.free = free
        self.todo: queue.Queue[tuple[mmap.mmap, int, int] | None] = queue.Queue()
        self.error: OSError | None = None
        self.failed_at = 0

    def run(self) -> None:
        while (item := self.todo.get()) is not None:
            buf, offset, length = item
            if self.error is None:
                try:
                    _pwrite_all(self.fd, memoryview(buf)[:length], offset)
                except OSError as exc:
                    self.error, self.failed_at = exc, offset
            self.free.put(buf)


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(0, "the device accepted no more bytes")
        view, offset = view[written:], offset + written


def write_image(
    target: BlockTarget,
    chunks: Iterable[bytes | memoryview],
    *,
    fmt: str,
    sha256: str,
    disk_size: int,
    progress: _Progress,
    verify: bool = True,
) -> WriteResult:
    """Worker thread: write the image ``chunks`` (in ``fmt``) to ``target``; verify.

    Raises :class:`ImageWriteError` with the cause (too small, checksum, I/O).
    """
    try:
        inflate = decompressor(fmt)
    except ImageFormatError as exc:
        raise ImageWriteError(str(exc)) from None
    fd = _open_exclusive(target, os.O_DIRECT)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        if disk_size > size:
            raise ImageWriteError(
                f"the image ({disk_size} bytes) is larger than {target.name} ({size} bytes)"
            )
        written, digest = _stream(fd, target, chunks, inflate, sha256, size, progress)
        if verify:
            _verify(fd, target, written, digest, progress)
        return WriteResult(target.path, written, digest, verify)
    finally:
        os.close(fd)


def _stream(
    fd: int,
    target: BlockTarget,
    chunks: Iterable[bytes | memoryview],
    inflate: Any,
    sha256: str,
    size: int,
    progress: _Progress,
) -> tuple[int, str]:
    free: queue.Queue[mmap.mmap] = queue.Queue()
    for buf in _buffers():
        free.put(buf)
    writer = _Writer(fd, free)
    writer.start()
    source_sha = hashlib.sha256()
    # A raw image is written as it comes: its own hash is the written bytes' hash.
    out_sha = source_sha if inflate.identity else hashlib.sha256()
    offset = fill = 0
    buf = free.get()
    try:
        for chunk in chunks:
            source_sha.update(chunk)
            data = memoryview(inflate.feed(chunk))
            progress.add(len(chunk))
            while data:
                take = min(len(data), BUFFER - fill)
                if offset + fill + take > size:
                    raise ImageWriteError(f"the image is larger than {target.name} ({size} bytes)")
                buf[fill : fill + take] = data[:take]
                fill += take
                data = data[take:]
                if fill == BUFFER:
                    if out_sha is not source_sha:
                        out_sha.update(buf)
                    writer.todo.put((buf, offset, fill))
                    offset, fill = offset + fill, 0
                    buf = free.get()
                    _raise_write_error(writer, target)
        inflate.finish()
        if not fill and offset == 0:
            raise ImageWriteError("the image is empty")
        if source_sha.hexdigest() != sha256:
            raise ImageWriteError(
                f"checksum mismatch: the image downloaded hashes to {source_sha.hexdigest()}, "
                f"the registry says {sha256}"
            )
        aligned = fill - fill % SECTOR
        if out_sha is not source_sha:
            out_sha.update(memoryview(buf)[:fill])
        if aligned:
            writer.todo.put((buf, offset, aligned))
    finally:
        writer.todo.put(None)
        writer.join()
    _raise_write_error(writer, target)
    tail = fill - aligned
    if tail:
        _write_tail(target, memoryview(buf)[aligned:fill], offset + aligned)
    os.fsync(fd)
    return offset + fill, out_sha.hexdigest()


def _raise_write_error(writer: _Writer, target: BlockTarget) -> None:
    if writer.error is not None:
        raise ImageWriteError(
            f"writing {target.name} failed at byte {writer.failed_at}: "
            f"{writer.error.strerror or writer.error} (did the device go away?)"
        )


def _write_tail(target: BlockTarget, data: memoryview, offset: int) -> None:
    # O_DIRECT moves whole sectors only; the last partial one goes through the page cache.
    fd = os.open(target.path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        _pwrite_all(fd, data, offset)
        os.fsync(fd)
    except OSError as exc:
        raise ImageWriteError(f"writing {target.name} failed at byte {offset}: {exc}") from None
    finally:
        os.close(fd)


def _verify(fd: int, target: BlockTarget, length: int, expected: str, progress: _Progress) -> None:
    """Read the written bytes back from the device and compare their sha256."""
    buf = mmap.mmap(-1, BUFFER)
    sha = hashlib.sha256()
    offset = 0
    try:
        while offset < length:
            want = min(BUFFER, length - offset)
            count = (
                os.preadv(fd, [buf], offset) if want == BUFFER else _read_end(fd, buf, want, offset)
            )
            if count <= 0:
                raise ImageWriteError(f"{target.name} ended at byte {offset} while verifying")
            count = min(count, want)
            sha.update(memoryview(buf)[:count])
            offset += count
            progress.add(count)
    except OSError as exc:
        raise ImageWriteError(
            f"reading {target.name} back failed at byte {offset}: {exc}"
        ) from None
    finally:
        buf.close()
    if sha.hexdigest() != expected:
        raise ImageWriteError(
            f"verification failed: {target.name} reads back {sha.hexdigest()}, wrote {expected}"
        )


def _read_end(fd: int, buf: mmap.mmap, want: int, offset: int) -> int:
    # Direct reads are whole sectors too: read up to the next sector boundary.
    rounded = -(-want // SECTOR) * SECTOR
    return os.preadv(fd, [memoryview(buf)[:rounded]], offset)
