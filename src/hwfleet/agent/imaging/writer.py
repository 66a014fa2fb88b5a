"""Stream an image onto a block device: decompress, hash, aligned direct writes, read back.

Three stages, each in its own thread, pass page-aligned buffers from a small pool
(:mod:`.pipeline`): the caller's worker thread reads the source straight into a
buffer (decompressing on the way, hashing the compressed bytes), a hash thread
feeds the written bytes to sha256, and a write thread ``pwrite``\\s the same buffer
with ``O_DIRECT`` (no page cache: memory stays the pool's size however large the
image). ``hashlib``, reads and ``pwrite`` all release the GIL, so sha256 (the
costliest step, about 1.3 GB/s a core) runs beside the writes instead of before
them. A tail that is not a whole sector goes through an ordinary descriptor.

Verification reads the written bytes back (``O_DIRECT`` again, so the device
answers, not the cache; a read thread ahead of the hashing) and compares their
sha256 with what was written; the source's own sha256 is checked against the
registry's as it streams.

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
from dataclasses import dataclass
from typing import Any

from hwfleet.agent.hardware.erase import _open_exclusive, _Progress
from hwfleet.agent.hardware.protect import BlockTarget
from hwfleet.agent.imaging.pipeline import BufferPool, Stage, fill, pwrite_all
from hwfleet.agent.imaging.readers import CountingReader, Reader, decompressing
from hwfleet.errors import DeviceError
from hwfleet.images.formats import ImageFormatError

MIB = 1024 * 1024
#: Measured (bench/imaging.py): 2 MiB beats 4 and 8 MiB by 20-30 %: a buffer the read
#: has just filled is still in the CPU cache when sha256 and the kernel's copy read it.
BUFFER = 2 * MIB
#: Enough that a stall of one stage (a flush, a busy core) does not stop the others; 16 MiB.
BUFFERS = 8
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


def write_image(
    target: BlockTarget,
    source: Reader,
    *,
    fmt: str,
    sha256: str,
    disk_size: int,
    progress: _Progress,
    verify: bool = True,
) -> WriteResult:
    """Worker thread: write the image read from ``source`` (in ``fmt``) to ``target``; verify.

    Raises :class:`ImageWriteError` with the cause (too small, checksum, I/O).
    """
    raw = fmt == "raw"
    # A raw image is written as it comes: the hash thread's digest is also the source's.
    counted = CountingReader(source, progress.add, None if raw else hashlib.sha256())
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
        written, digest = _stream(fd, target, reader, size)
        source_sha = digest if raw else counted.sha.hexdigest()
        if source_sha != sha256:
            raise ImageWriteError(
                f"checksum mismatch: the image downloaded hashes to {source_sha}, "
                f"the registry says {sha256}"
            )
        if verify:
            _verify(fd, target, written, digest, progress)
        return WriteResult(target.path, written, digest, verify)
    finally:
        os.close(fd)


def _stream(fd: int, target: BlockTarget, reader: Reader, size: int) -> tuple[int, str]:
    """Write everything ``reader`` gives; (bytes written, their sha256)."""
    pool = BufferPool(BUFFERS, BUFFER)
    out_sha = hashlib.sha256()
    hasher = Stage("image-hash", lambda buf, _o, n: out_sha.update(memoryview(buf)[:n]), pool)
    writer = Stage("image-write", lambda buf, o, n: pwrite_all(fd, memoryview(buf)[:n], o), pool)
    hasher.start()
    writer.start()
    offset, tail = 0, b""
    try:
        while True:
            buf = pool.get()
            _raise_write_error(writer, target)
            try:
                count = fill(reader.readinto, buf)
            except ImageFormatError as exc:
                pool.release(buf)
                raise ImageWriteError(str(exc)) from None
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
            pool.share(buf, 2)
            hasher.todo.put((buf, offset, count))
            writer.todo.put((buf, offset, aligned))
            offset += count
            if count < BUFFER:
                break
    finally:
        hasher.finish()
        writer.finish()
    _raise_write_error(writer, target)
    if not offset:
        raise ImageWriteError("the image is empty")
    if tail:
        _write_tail(target, memoryview(tail), offset - len(tail))
    os.fsync(fd)
    return offset, out_sha.hexdigest()


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


def _verify(fd: int, target: BlockTarget, length: int, expected: str, progress: _Progress) -> None:
    """Read the written bytes back from the device and compare their sha256.

    A read thread keeps the pool's buffers filled while this thread hashes.
    """
    pool = BufferPool(BUFFERS, BUFFER)
    done: queue.Queue[tuple[mmap.mmap, int] | BaseException | None] = queue.Queue()
    stop = threading.Event()
    reader = threading.Thread(
        target=_read_back, args=(fd, length, pool, done, stop), name="image-verify", daemon=True
    )
    reader.start()
    sha = hashlib.sha256()
    offset = 0
    try:
        while (item := done.get()) is not None:
            if isinstance(item, OSError):
                raise ImageWriteError(
                    f"reading {target.name} back failed at byte {offset}: {item}"
                ) from None
            if isinstance(item, BaseException):
                raise item
            buf, count = item
            if not count:
                raise ImageWriteError(f"{target.name} ended at byte {offset} while verifying")
            sha.update(memoryview(buf)[:count])
            pool.release(buf)
            offset += count
            progress.add(count)
    finally:
        stop.set()
        _drain(pool, done)
        reader.join()
    if sha.hexdigest() != expected:
        raise ImageWriteError(
            f"verification failed: {target.name} reads back {sha.hexdigest()}, wrote {expected}"
        )


def _read_back(
    fd: int,
    length: int,
    pool: BufferPool,
    done: queue.Queue[tuple[mmap.mmap, int] | BaseException | None],
    stop: threading.Event,
) -> None:
    offset = 0
    try:
        while offset < length and not stop.is_set():
            buf = pool.get()
            want = min(BUFFER, length - offset)
            # Direct reads are whole sectors too: read up to the next sector boundary.
            rounded = -(-want // SECTOR) * SECTOR
            count = min(os.preadv(fd, [memoryview(buf)[:rounded]], offset), want)
            done.put((buf, count))
            if count <= 0:
                return
            offset += count
        done.put(None)
    except BaseException as exc:  # handed to the hashing thread, which raises it
        done.put(exc)


def _drain(
    pool: BufferPool, done: queue.Queue[tuple[mmap.mmap, int] | BaseException | None]
) -> None:
    """Give back the buffers the reader queued, so a reader waiting for one can see ``stop``."""
    while True:
        try:
            item = done.get_nowait()
        except queue.Empty:
            return
        if isinstance(item, tuple):
            pool.release(item[0])
