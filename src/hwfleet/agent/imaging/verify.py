"""Reading the written image back from the device, and the errors of writing an image.

Verification reads the written bytes back with ``O_DIRECT`` (so the device answers, not the
page cache), a read thread keeping the pool's buffers filled ahead of the hashing, and
compares their digest with the digest of what was written (:mod:`.writer`).
"""

from __future__ import annotations

import mmap
import os
import queue
import threading

from hwfleet.agent.hardware.erase import _Progress
from hwfleet.agent.hardware.protect import BlockTarget
from hwfleet.agent.imaging.pipeline import BufferPool
from hwfleet.errors import DeviceError
from hwfleet.images.digest import Digest

MIB = 1024 * 1024
#: Measured (bench/imaging.py, with sha256): 2 MiB beat 4 and 8 MiB by 20-30 %: a buffer
#: the read has just filled is still in the CPU cache when the hash and the kernel's copy
#: read it.
BUFFER = 2 * MIB
#: Enough that a stall of one stage (a flush, a busy core) does not stop the others; 16 MiB.
BUFFERS = 8
SECTOR = 512


class ImageWriteError(DeviceError):
    """Writing the image failed: the message names the cause."""


class SourceDamagedError(ImageWriteError):
    """The image as read is not the registered image (checksum, corrupt compressed data).

    From a cache entry that means the copy on this machine's disk went bad after it was
    checked; the caller may drop it and fetch the image again.
    """


def verify_written(
    fd: int, target: BlockTarget, length: int, written: Digest, progress: _Progress
) -> None:
    """Read the written bytes back from the device and compare their digest (same algorithm).

    A read thread keeps the pool's buffers filled while this thread hashes.
    """
    pool = BufferPool(BUFFERS, BUFFER)
    done: queue.Queue[tuple[mmap.mmap, int] | BaseException | None] = queue.Queue()
    stop = threading.Event()
    reader = threading.Thread(
        target=_read_back, args=(fd, length, pool, done, stop), name="image-verify", daemon=True
    )
    reader.start()
    hasher = written.hasher()
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
            hasher.update(memoryview(buf)[:count])
            pool.release(buf)
            offset += count
            progress.add(count)
    finally:
        stop.set()
        _drain(pool, done)
        reader.join()
    if hasher.hexdigest() != written.hexdigest:
        raise ImageWriteError(
            f"verification failed ({written.algorithm}): {target.name} reads back "
            f"{hasher.hexdigest()}, wrote {written.hexdigest}"
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
