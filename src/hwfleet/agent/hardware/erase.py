"""Erase named block devices (``decom.disk_erase``): zeros or discard, then read-back checks.

Every target is checked (:mod:`~hwfleet.agent.hardware.protect`) and opened
exclusively before any of them is written, so one protected device refuses the
whole request. The writing runs in a worker thread; the event loop only relays
progress (percent and ETA, at most every 0.5 s, and 100 at the end) and can
cancel: the worker stops at the next chunk and the coroutine re-raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import os
import secrets
import struct
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hwfleet.agent.hardware.protect import BlockTarget, ProtectedDeviceError, inspect_target
from hwfleet.errors import DeviceError

MIB = 1024 * 1024
#: ``_IO(0x12, 119)``: discard a byte range (``blkdiscard``).
BLKDISCARD = 0x1277
#: ``_IO(0x12, 97)``: drop the device's buffer cache, so verification reads the medium.
BLKFLSBUF = 0x1261
REPORT_INTERVAL = 0.5
#: Flush this often, so progress measures data on the device rather than in the page cache.
SYNC_EVERY = 64 * MIB
VERIFY_BLOCK = 64 * 1024
VERIFY_SAMPLES = 256
METHODS = ("zero", "discard")

Report = Callable[[float, float | None], Awaitable[None]]
T = TypeVar("T")


class EraseError(DeviceError):
    """The erase ran but did not succeed (I/O error, verification found data)."""


class _Stopped(Exception):
    """The worker saw the stop flag."""


@dataclass
class _Progress:
    """Shared between the worker (writes ``done``) and the loop (reads and reports)."""

    loop: asyncio.AbstractEventLoop
    total: int
    changed: asyncio.Event
    stop: threading.Event
    started: float
    done: int = 0
    last_signal: float = 0.0
    last_percent: float = -1.0

    def add(self, count: int) -> None:
        """Worker side: count bytes and wake the loop at most every REPORT_INTERVAL."""
        if self.stop.is_set():
            raise _Stopped
        self.done += count
        now = time.monotonic()
        if now - self.last_signal >= REPORT_INTERVAL:
            self.last_signal = now
            self.loop.call_soon_threadsafe(self.changed.set)

    def snapshot(self) -> tuple[float, float | None]:
        done, total = self.done, max(self.total, 1)
        # 100 is reserved for the end: writes can be done while flush and verify still run.
        percent = min(99.9, done * 100.0 / total)
        elapsed = time.monotonic() - self.started
        eta = elapsed * (total - done) / done if done else None
        return percent, eta


async def erase_block_devices(
    targets: list[str],
    *,
    report: Report,
    method: str = "zero",
    chunk: int = 4 * MIB,
    verify: bool = True,
    sys_root: Path = Path("/"),
    dev_root: Path = Path("/dev"),
) -> dict[str, Any]:
    """Erase each named device; raises ProtectedDeviceError (nothing written) or EraseError.

    Returns ``{"devices": [{"name", "bytes", "seconds", "method", "verified"}]}``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if not targets:
        raise ValueError("no devices named: erase needs explicit device names")
    if chunk < 4096 or chunk % 4096:
        raise ValueError(f"chunk must be a positive multiple of 4096 bytes, not {chunk}")
    checked = [inspect_target(t, sys_root=sys_root, dev_root=dev_root) for t in targets]
    seen: dict[tuple[int, int], str] = {}
    for device in checked:
        if device.devnum in seen:
            raise ValueError(f"{device.target} and {seen[device.devnum]} are the same device")
        seen[device.devnum] = device.target
    opened = await asyncio.to_thread(_open_all, checked)
    try:
        sizes = [os.lseek(fd, 0, os.SEEK_END) for fd in opened]
        progress = _Progress(
            loop=asyncio.get_running_loop(),
            total=sum(sizes),
            changed=asyncio.Event(),
            stop=threading.Event(),
            started=time.monotonic(),
        )
        await _report(progress, report, 0.0, None)
        results = []
        for device, fd, size in zip(checked, opened, sizes, strict=True):
            begun = time.monotonic()
            work = functools.partial(_erase_one, fd, size, method, chunk, verify, progress)
            used, verified = await _run_reporting(work, progress, report)
            results.append(
                {
                    "name": device.name,
                    "bytes": size,
                    "seconds": round(time.monotonic() - begun, 3),
                    "method": used,
                    "verified": verified,
                }
            )
        await _report(progress, report, 100.0, 0.0)
        return {"devices": results}
    finally:
        for fd in opened:
            os.close(fd)


def _open_all(devices: list[BlockTarget]) -> list[int]:
    opened: list[int] = []
    try:
        for device in devices:
            opened.append(_open_exclusive(device))
    except BaseException:
        for fd in opened:
            os.close(fd)
        raise
    return opened


def _open_exclusive(device: BlockTarget, flags: int = 0) -> int:
    """``flags``: added to the open (``O_DIRECT`` for the image writer, which shares this)."""
    try:
        # O_EXCL on a block device is an exclusive claim: the kernel answers EBUSY while the
        # device is mounted, swapped on or held, and refuses mounts while we hold it.
        return os.open(device.path, os.O_RDWR | os.O_EXCL | os.O_CLOEXEC | flags)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise ProtectedDeviceError(device.target, f"{device.name} is in use (busy)") from exc
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise ProtectedDeviceError(
                device.target, f"{device.name} cannot be opened for writing: {exc.strerror}"
            ) from exc
        raise EraseError(f"{device.target}: cannot open {device.path}: {exc.strerror}") from exc


async def _report(progress: _Progress, report: Report, percent: float, eta: float | None) -> None:
    if percent > progress.last_percent:
        progress.last_percent = percent
        await report(round(percent, 1), None if eta is None else round(eta, 1))


async def _run_reporting(work: Callable[[], T], progress: _Progress, report: Report) -> T:
    """Run ``work`` in a thread, relaying progress; on cancellation stop it and wait for it."""
    worker = asyncio.ensure_future(asyncio.to_thread(work))
    try:
        while not worker.done():
            waiter = asyncio.ensure_future(progress.changed.wait())
            try:
                await asyncio.wait({worker, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            if progress.changed.is_set():
                progress.changed.clear()
                await _report(progress, report, *progress.snapshot())
        return worker.result()
    except BaseException:
        # Cancelled, or stopped at a progress report (a task cancelled at its safe point):
        # either way the writer thread must stop before the device is closed under it.
        progress.stop.set()
        # The thread cannot be killed; it stops at its next chunk, and the fd must outlive it.
        with contextlib.suppress(_Stopped, Exception):
            await asyncio.shield(worker)
        raise


def _erase_one(
    fd: int, size: int, method: str, chunk: int, verify: bool, progress: _Progress
) -> tuple[str, bool]:
    """Worker thread: erase one device; returns (method actually used, verified)."""
    if method == "discard" and _discard(fd, size) and (not verify or _sampled_zero(fd, size)):
        progress.add(size)
        return "discard", verify
    # Discard unsupported, or the device does not read back zeros after it: write them.
    _write_zeros(fd, size, chunk, progress)
    if verify:
        offset = _first_nonzero(fd, size)
        if offset is not None:
            raise EraseError(f"verification read non-zero data at byte {offset} after erasing")
    return "zero", verify


def _discard(fd: int, size: int) -> bool:
    try:
        fcntl.ioctl(fd, BLKDISCARD, struct.pack("=QQ", 0, size))
    except OSError:
        return False
    return True


def _write_zeros(fd: int, size: int, chunk: int, progress: _Progress) -> None:
    zeros = memoryview(bytes(chunk))
    offset = since_sync = 0
    while offset < size:
        length = min(chunk, size - offset)
        try:
            written = os.pwrite(fd, zeros[:length], offset)
        except OSError as exc:
            raise EraseError(f"write failed at byte {offset}: {exc.strerror}") from exc
        if written <= 0:
            raise EraseError(f"write made no progress at byte {offset}")
        offset += written
        since_sync += written
        if since_sync >= SYNC_EVERY:
            os.fdatasync(fd)
            since_sync = 0
        progress.add(written)
    os.fsync(fd)


def _drop_cache(fd: int) -> None:
    # Reading back from the page cache would verify our own writes, not the device.
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, BLKFLSBUF, 0)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def _sample_offsets(size: int) -> list[int]:
    block = min(VERIFY_BLOCK, size)
    last = size - block
    if last <= 0:
        return [0]
    offsets = {0, last}
    stride = max(size // VERIFY_SAMPLES, block)
    for start in range(0, last, stride):
        # One random block in each stride: spread over the whole device, different every run.
        offsets.add(min(last, start + secrets.randbelow(stride) // 512 * 512))
    return sorted(offsets)


def _first_nonzero(fd: int, size: int) -> int | None:
    """Read back sampled blocks; the offset of the first non-zero byte found, or None."""
    _drop_cache(fd)
    block = min(VERIFY_BLOCK, size)
    for offset in _sample_offsets(size):
        data = os.pread(fd, block, offset)
        if data.count(0) != len(data):
            return offset + next(i for i, byte in enumerate(data) if byte)
    return None


def _sampled_zero(fd: int, size: int) -> bool:
    return _first_nonzero(fd, size) is None
