"""Stream an image onto a block device: decompress, hash, aligned direct writes, read back.

Stages pass page-aligned buffers from a small pool (:mod:`.pipeline`): the caller's
worker thread reads the source straight into a buffer (decompressing on the way, hashing
the compressed bytes), and a write thread ``pwrite``\\s it with ``O_DIRECT`` (no page
cache: memory stays the pool's size however large the image). The written bytes are
hashed by the reading thread right after the read when the image is raw and comes from
a file (the buffer is still in that core's cache; measured cheaper in CPU and faster than
a hash thread, bench/imaging.py), else by a hash thread of its own, beside the TLS
decryption or the decompression. A raw image in a file (the cache) skips the buffers:
it is mapped a window at a time, hashed in place and written from the mapping
(:func:`_stream_mapped`, zero copy). The hashers, reads and ``pwrite`` all release the GIL.
The digest is the image record's (:mod:`hwfleet.images.digest`): blake3 (about 5.7 GiB/s
a core here) when the registry recorded one, else sha256 (1.6 GiB/s, which used to bound
the whole write).
A tail that is not a whole sector goes through an ordinary descriptor.

Verification (:mod:`.verify`) reads the written bytes back (``O_DIRECT`` again, so the
device answers, not the cache) and compares their digest with what was written; the
source's own digest is checked against the registry's as it streams.

The target is checked with the very function ``decom.disk_erase`` uses
(:func:`hwfleet.agent.hardware.protect.inspect_target`) and claimed with
``O_EXCL`` like the erase, so every device the erase refuses is refused here too.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hwfleet.agent.hardware.erase import _open_exclusive, _Progress
from hwfleet.agent.hardware.protect import BlockTarget
from hwfleet.agent.imaging.mapped import MapAhead
from hwfleet.agent.imaging.pipeline import BufferPool, Stage, fill, pwrite_all
from hwfleet.agent.imaging.readers import CountingReader, FileReader, Reader, decompressing
from hwfleet.agent.imaging.verify import (
    BUFFER,
    BUFFERS,
    MIB,
    SECTOR,
    ImageWriteError,
    SourceDamagedError,
    verify_written,
)
from hwfleet.images.digest import Digest
from hwfleet.images.formats import ImageFormatError

__all__ = ["ImageWriteError", "SourceDamagedError", "WriteResult", "write_image"]

#: The zero-copy path (a raw image in a file): the file is mapped this much at a time, and at
#: most WINDOWS windows are mapped at once (one mapped ahead, one hashed, one written):
#: 24 MiB of page cache mapped, none of it the agent's own memory. 8 MiB windows wrote as
#: fast as 16 MiB ones (bench/imaging.py) and keep VmRSS, mapped pages included, under 64 MB.
WINDOW = 8 * MIB
WINDOWS = 3
#: Off: a raw file is read into the pool's buffers like any other source (bench/imaging.py).
ZERO_COPY = True


@dataclass
class WriteResult:
    device: str
    bytes_written: int
    #: The algorithm (``blake3`` or ``sha256``) and the digest of the bytes written.
    algorithm: str
    digest: str
    verified: bool

    def to_json(self) -> dict[str, Any]:
        """``{"device", "bytes_written", "<algorithm>": digest, "verified"}``."""
        return {
            "device": self.device,
            "bytes_written": self.bytes_written,
            self.algorithm: self.digest,
            "verified": self.verified,
        }


def write_image(
    target: BlockTarget,
    source: Reader,
    *,
    fmt: str,
    expected: Digest,
    disk_size: int,
    progress: _Progress,
    verify: bool = True,
    hash_while_reading: bool = True,
) -> WriteResult:
    """Worker thread: write the image read from ``source`` (in ``fmt``) to ``target``; verify.

    ``expected`` is the source's digest as the registry recorded it (blake3, or sha256 for
    an image registered before blake3); the written bytes are hashed and read back with
    the same algorithm. ``hash_while_reading``: the source is cheap to read (a cached
    file, not a TLS download), so for a raw image the reading thread also hashes. Raises
    :class:`ImageWriteError` with the cause (too small, checksum, I/O).
    """
    raw = fmt == "raw"
    # A raw image is written as it comes: the written bytes' digest is also the source's.
    counted = CountingReader(source, progress.add, None if raw else expected.hasher())
    try:
        reader = decompressing(fmt, counted)
    except ImageFormatError as exc:
        raise ImageWriteError(str(exc)) from None
    fd = _open_exclusive(target, os.O_DIRECT)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        if disk_size > size:
            raise ImageWriteError(
                f"the image ({disk_size} bytes) is larger than {target.name} ({size} bytes)"
            )
        # A raw image read from a file: the reader's thread hashes each buffer while it is
        # hot in its core's cache. Behind TLS or a decompressor, reading is the heavy stage
        # and the hash gets a thread of its own.
        inline = raw and hash_while_reading
        if inline and ZERO_COPY and isinstance(source, FileReader):
            written, digest = _stream_mapped(fd, target, source, size, expected, progress.add)
        else:
            written, digest = _stream(fd, target, reader, size, expected, inline=inline)
        source_digest = digest.hexdigest if raw or counted.sha is None else counted.sha.hexdigest()
        mismatch = expected.mismatch("the image read", source_digest)
        if mismatch is not None:
            raise SourceDamagedError(mismatch)
        if verify:
            verify_written(fd, target, written, digest, progress)
        return WriteResult(target.path, written, digest.algorithm, digest.hexdigest, verify)
    finally:
        os.close(fd)


def _stream(
    fd: int, target: BlockTarget, reader: Reader, size: int, expected: Digest, *, inline: bool
) -> tuple[int, Digest]:
    """Write everything ``reader`` gives; (bytes written, their digest by ``expected``'s
    algorithm). ``inline``: hash each buffer in this thread right after reading it (while
    it is still in this core's cache), else in a hash thread of its own."""
    pool = BufferPool(BUFFERS, BUFFER)
    out = expected.hasher()

    def hash_written(buf: mmap.mmap, _offset: int, count: int) -> None:
        out.update(memoryview(buf)[:count])

    hasher = None if inline else Stage("image-hash", hash_written, pool)
    writer = Stage("image-write", lambda buf, o, n: pwrite_all(fd, memoryview(buf)[:n], o), pool)
    stages = [writer] if hasher is None else [hasher, writer]
    for stage in stages:
        stage.start()
    offset, tail = 0, b""
    try:
        while True:
            buf = pool.get()
            _raise_write_error(writer, target)
            try:
                count = fill(reader.readinto, buf)
            except ImageFormatError as exc:
                pool.release(buf)
                raise SourceDamagedError(str(exc)) from None
            except BaseException:
                pool.release(buf)
                raise
            if offset + count > size:
                pool.release(buf)
                raise ImageWriteError(f"the image is larger than {target.name} ({size} bytes)")
            if not count:
                pool.release(buf)
                break
            aligned = count - count % SECTOR
            # O_DIRECT moves whole sectors only; the last partial one is written at the end.
            tail = bytes(memoryview(buf)[aligned:count])
            if hasher is None:
                hash_written(buf, offset, count)
            else:
                pool.share(buf, 2)
                hasher.todo.put((buf, offset, count))
            writer.todo.put((buf, offset, aligned))
            offset += count
            if count < BUFFER:
                break
    finally:
        for stage in stages:
            stage.finish()
    _finish(fd, target, writer, offset, tail)
    return offset, Digest(expected.algorithm, out.hexdigest())


def _stream_mapped(
    fd: int,
    target: BlockTarget,
    source: FileReader,
    size: int,
    expected: Digest,
    add_progress: Callable[[int], None],
) -> tuple[int, Digest]:
    """Zero-copy :func:`_stream` of a raw image file: hash and write from a mapping of it.

    Reading the file into a buffer copies every byte on the core that also hashes; on two
    cores that copy plus the hash cost more per GiB than dd's copy plus the loop device's
    (docs/imaging.md). Mapped (ahead, by :class:`.mapped.MapAhead`), this thread hashes
    the page cache's pages in place and the write thread's ``O_DIRECT`` ``pwrite`` hands
    the device those same pages (the kernel pins them for the transfer). The bytes hashed
    are the bytes written unless the file changes between the two, which only root can do
    (the cache never rewrites an entry in place: it renames a new file over it) and which
    the read-back verification catches.
    """
    length = source.size()
    if length > size:
        raise ImageWriteError(f"the image is larger than {target.name} ({size} bytes)")
    out = expected.hasher()
    mapper = MapAhead(source, length, WINDOW, WINDOWS)
    writer = Stage("image-write", lambda buf, o, n: pwrite_all(fd, memoryview(buf)[:n], o), mapper)
    writer.start()
    mapper.start()
    offset, tail = 0, b""
    try:
        while (item := mapper.ready.get()) is not None:
            if isinstance(item, OSError):  # the cached copy cannot be read: fetched again
                raise SourceDamagedError(
                    f"reading the image failed at byte {offset}: {item.strerror or item}"
                )
            window, offset = item
            count = len(window)
            with memoryview(window) as view:  # released before the write stage unmaps
                out.update(view)
            add_progress(count)
            aligned = count - count % SECTOR
            tail = window[aligned:count]  # a copy; not empty only for the last window
            writer.todo.put((window, offset, aligned))
            offset += count
            _raise_write_error(writer, target)
    finally:
        mapper.halt()
        writer.finish()
    _finish(fd, target, writer, offset, tail)
    return offset, Digest(expected.algorithm, out.hexdigest())


def _finish(fd: int, target: BlockTarget, writer: Stage, offset: int, tail: bytes) -> None:
    """After the write stage drained: its error, the sub-sector tail, the flush."""
    _raise_write_error(writer, target)
    if not offset:
        raise ImageWriteError("the image is empty")
    if tail:
        _write_tail(target, memoryview(tail), offset - len(tail))
    os.fsync(fd)


def _raise_write_error(writer: Stage, target: BlockTarget) -> None:
    error = writer.error
    if error is None:
        return
    if not isinstance(error, OSError):
        raise error
    raise ImageWriteError(
        f"writing {target.name} failed at byte {writer.failed_at}: "
        f"{error.strerror or error} (did the device go away?)"
    )


def _write_tail(target: BlockTarget, data: memoryview, offset: int) -> None:
    # O_DIRECT moves whole sectors only; the last partial one goes through the page cache.
    fd = os.open(target.path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        pwrite_all(fd, data, offset)
        os.fsync(fd)
    except OSError as exc:
        raise ImageWriteError(f"writing {target.name} failed at byte {offset}: {exc}") from None
    finally:
        os.close(fd)
