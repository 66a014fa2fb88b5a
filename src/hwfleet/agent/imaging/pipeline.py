"""A small pool of page-aligned buffers and in-order worker threads (the image writer's stages).

The writer's stages (read and decompress, hash, ``O_DIRECT`` writes) run in their own
threads and pass whole buffers along; ``hashlib``, ``pwrite``/``preadv``
and file reads all release the GIL on large buffers, so on a machine with cores to
spare the stages really overlap and the slowest one sets the pace. Buffers are
anonymous ``mmap``\\s (page-aligned, as ``O_DIRECT`` needs), allocated once: memory
is the pool's size whatever the image's size.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import mmap
import os
import queue
import threading
from collections.abc import Callable
from typing import Protocol

#: (buffer, byte offset on the device, length)
Item = tuple[mmap.mmap, int, int]
#: Private buffers on transparent huge pages (see :func:`_buffer`); off: shared 4 KiB pages.
HUGE_PAGES = True


class BufferPool:
    """``count`` buffers of ``size`` bytes; a buffer handed to several stages comes back
    to the pool when the last of them releases it."""

    def __init__(self, count: int, size: int) -> None:
        self.size = size
        self._free: queue.Queue[mmap.mmap] = queue.Queue()
        self._users: dict[int, int] = {}
        self._lock = threading.Lock()
        for _ in range(count):
            self._free.put(_buffer(size))

    def get(self) -> mmap.mmap:
        """A free buffer; blocks while every buffer is in use (the back-pressure)."""
        return self._free.get()

    def share(self, buf: mmap.mmap, users: int) -> None:
        with self._lock:
            self._users[id(buf)] = users

    def release(self, buf: mmap.mmap) -> None:
        with self._lock:
            left = self._users.get(id(buf), 1) - 1
            if left > 0:
                self._users[id(buf)] = left
                return
            self._users.pop(id(buf), None)
        self._free.put(buf)


def _buffer(size: int) -> mmap.mmap:
    """A page-aligned buffer; private and on huge pages where the kernel gives them.

    ``mmap(-1, n)`` is a *shared* anonymous mapping (shmem), which never gets transparent
    huge pages; a private one of a 2 MiB multiple is 2 MiB-aligned (Linux 6.7+) and, asked
    with ``MADV_HUGEPAGE`` (THP is "madvise" by default), is one page per 2 MiB: pinning it
    for each ``O_DIRECT`` write is one page instead of 512. ``MADV_DONTFORK``: a process
    the agent forks while a direct write is in flight does not share the buffer.
    """
    if not HUGE_PAGES:
        return mmap.mmap(-1, size)
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for advice in ("MADV_HUGEPAGE", "MADV_DONTFORK"):
        if hasattr(mmap, advice):
            with contextlib.suppress(OSError):  # a kernel without THP: 4 KiB pages
                buf.madvise(getattr(mmap, advice))
    return buf


class Releaser(Protocol):
    """Where a stage gives a buffer back once done with it (a pool, or an unmapping)."""

    def release(self, buf: mmap.mmap, /) -> None: ...


class Stage(threading.Thread):
    """Runs ``work`` on the items queued, in order, then releases each buffer.

    The first error is kept (with the offset it happened at) and later items are only
    released, so the producer can stop at its next check and nothing deadlocks.
    """

    def __init__(
        self, name: str, work: Callable[[mmap.mmap, int, int], None], pool: Releaser
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.work = work
        self.pool = pool
        self.todo: queue.Queue[Item | None] = queue.Queue()
        self.error: BaseException | None = None
        self.failed_at = 0

    def run(self) -> None:
        while (item := self.todo.get()) is not None:
            buf, offset, length = item
            if self.error is None:
                try:
                    self.work(buf, offset, length)
                except BaseException as exc:  # handed to the producer, which re-raises
                    self.error, self.failed_at = exc, offset
            self.pool.release(buf)

    def finish(self) -> None:
        """Let the queued items drain, then stop the thread."""
        self.todo.put(None)
        self.join()


def fill(read: Callable[[memoryview], int], buf: mmap.mmap) -> int:
    """Read into ``buf`` until it is full or the source ends; the count."""
    view = memoryview(buf)
    done = 0
    while done < len(view):
        count = read(view[done:])
        if not count:
            break
        done += count
    return done


def pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(0, "the device accepted no more bytes")
        view, offset = view[written:], offset + written


#: sync_file_range(2)'s SYNC_FILE_RANGE_WRITE: start writing the range out, do not wait.
_SYNC_FILE_RANGE_WRITE = 2


@functools.cache
def _sync_file_range() -> Callable[..., int] | None:
    try:
        call: Callable[..., int] = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]  # type: ignore[attr-defined]
    return call


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Have the kernel start writing ``length`` bytes at ``offset`` to the disk now.

    A file written through the page cache is otherwise written out only when the final
    ``fsync`` asks, so that ``fsync`` waits for the whole file; started as each buffer
    lands, the disk works while the download goes on and the ``fsync`` waits for the tail.
    Python has no ``os.sync_file_range``: libc's is called (the GIL is released); where it
    is missing, nothing is started early and only the ``fsync`` is slower.
    """
    call = _sync_file_range()
    if call is not None:
        call(fd, offset, length, _SYNC_FILE_RANGE_WRITE)
