"""The writer's zero-copy path: a raw image file hashed and written from a mapping of it.

On a real loop device (O_DIRECT writes from file-backed pages), with a small window so
several windows, a last short one and a tail that is neither a whole page nor a whole
sector are all exercised; the device's bytes are compared with the image byte for byte.
A file changed under the mapping is caught: before it is hashed by the checksum, between
the hash and the write by the read-back.
"""

from __future__ import annotations

import asyncio
import errno
import mmap
import os
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import blake3
import pytest
from tests.integration.hardware.conftest import Attach

from hwfleet.agent.hardware.protect import inspect_target
from hwfleet.agent.imaging import writer
from hwfleet.agent.imaging.commands import new_progress
from hwfleet.agent.imaging.readers import FileReader
from hwfleet.agent.imaging.writer import ImageWriteError, SourceDamagedError, WriteResult
from hwfleet.images.digest import Digest

MIB = 1024 * 1024
WINDOW = 1 * MIB

Write = Callable[[Path, str], Awaitable[WriteResult]]


@pytest.fixture
def maps(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Small windows; the (offset, length) of every window the writer maps."""
    monkeypatch.setattr(writer, "WINDOW", WINDOW)
    calls: list[tuple[int, int]] = []
    real = FileReader.map

    def spy(self: FileReader, offset: int, length: int) -> mmap.mmap:
        calls.append((offset, length))
        return real(self, offset, length)

    monkeypatch.setattr(FileReader, "map", spy)
    return calls


@pytest.fixture
def write(loop_device: Attach) -> Write:
    """``await write(image, blake3)``: the image file written to a loop device, as a task does."""
    device = loop_device(8 * MIB, random=True)

    async def call(image: Path, digest: str) -> WriteResult:
        reader = FileReader(image)
        try:
            return await asyncio.to_thread(
                writer.write_image,
                inspect_target(device),
                reader,
                fmt="raw",
                expected=Digest("blake3", digest),
                disk_size=image.stat().st_size,
                progress=new_progress(1),
            )
        finally:
            reader.close()

    return call


def random_file(tmp_path: Path, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    image = tmp_path / "image.raw"
    image.write_bytes(data)
    return image, data


def overwrite(image: Path, at: int) -> None:
    with image.open("r+b") as handle:
        handle.seek(at)
        handle.write(b"changed")


def device_bytes(result: WriteResult) -> bytes:
    with open(result.device, "rb") as handle:
        return handle.read(result.bytes_written)


@pytest.mark.parametrize(
    "size",
    [3 * WINDOW + 5 * 4096 + 777, 2 * WINDOW, WINDOW - 4096 + 512, 300],
    ids=["windows-and-a-ragged-tail", "whole-windows", "sectors-not-pages", "under-a-sector"],
)
async def test_the_device_holds_the_image_byte_for_byte(
    tmp_path: Path, write: Write, maps: list[tuple[int, int]], size: int
) -> None:
    image, data = random_file(tmp_path, size)
    result = await write(image, blake3.blake3(data).hexdigest())
    assert result.verified and result.bytes_written == size
    assert device_bytes(result) == data
    # The zero-copy path ran: the file was mapped window after window, nothing left out.
    assert maps == [(at, min(WINDOW, size - at)) for at in range(0, size, WINDOW)]


async def test_a_file_changed_before_it_is_hashed_fails_the_checksum(
    tmp_path: Path, write: Write, maps: list[tuple[int, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    image, data = random_file(tmp_path, 3 * WINDOW + 100)
    spy = FileReader.map

    def change_later_bytes(self: FileReader, offset: int, length: int) -> mmap.mmap:
        if offset == WINDOW:  # the first window is written; a later one changes on disk
            overwrite(image, 2 * WINDOW + 10)
        return spy(self, offset, length)

    monkeypatch.setattr(FileReader, "map", change_later_bytes)
    with pytest.raises(SourceDamagedError, match=r"checksum mismatch \(blake3\)"):
        await write(image, blake3.blake3(data).hexdigest())
    assert len(maps) == 4


async def test_a_file_changed_between_hash_and_write_fails_the_read_back(
    tmp_path: Path, write: Write, maps: list[tuple[int, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The mapping is the page cache itself: bytes changed after the hash are what the
    # device gets, so the digest of the written bytes is not the device's.
    image, data = random_file(tmp_path, 2 * WINDOW)
    real = writer.pwrite_all

    def change_then_write(fd: int, view: memoryview, offset: int) -> None:
        if offset == 0:
            overwrite(image, 0)
        real(fd, view, offset)

    monkeypatch.setattr(writer, "pwrite_all", change_then_write)
    with pytest.raises(ImageWriteError, match=r"verification failed \(blake3\)"):
        await write(image, blake3.blake3(data).hexdigest())


async def test_a_window_that_cannot_be_read_is_a_damaged_source(
    tmp_path: Path, write: Write, maps: list[tuple[int, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # MADV_POPULATE_READ turns an unreadable page into EIO; the writer stops (its map-ahead
    # thread too) and names the byte, and the task drops the cached copy.
    image, data = random_file(tmp_path, 4 * WINDOW)
    spy = FileReader.map

    def unreadable(self: FileReader, offset: int, length: int) -> mmap.mmap:
        if offset == 2 * WINDOW:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return spy(self, offset, length)

    monkeypatch.setattr(FileReader, "map", unreadable)
    with pytest.raises(SourceDamagedError, match=f"failed at byte {2 * WINDOW}: Input/output"):
        await write(image, blake3.blake3(data).hexdigest())
    assert [name for name in map(str, threading.enumerate()) if "image-" in name] == []
