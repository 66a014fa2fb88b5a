"""The image writer checks by the record's digest: blake3 when it has one, else sha256.

Written to a regular file standing for the disk (what a simulated device's disk is), with
the same O_DIRECT writes, hashing and read-back as on a block device.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import blake3
import pytest
import zstandard

from hwfleet.agent.hardware.erase import _Progress
from hwfleet.agent.hardware.protect import BlockTarget
from hwfleet.agent.imaging.writer import ImageWriteError, write_image
from hwfleet.images.digest import Digest

MIB = 1024 * 1024
#: Several buffers and a tail that is not a whole sector.
IMAGE = os.urandom(5 * MIB + 777)


class BytesReader:
    def __init__(self, data: bytes) -> None:
        self._file = io.BytesIO(data)

    def readinto(self, view: memoryview) -> int:
        return self._file.readinto(view)


Write = Callable[[bytes, str, Digest], dict[str, object]]


@pytest.fixture
def disk(tmp_path: Path) -> BlockTarget:
    path = tmp_path / "disk.img"
    with path.open("wb") as handle:
        handle.truncate(8 * MIB)
    return BlockTarget(target="disk", path=str(path), name="disk", devnum=(0, 0))


@pytest.fixture(params=[True, False], ids=["hash-while-reading", "hash-thread"])
def write(disk: BlockTarget, request: pytest.FixtureRequest) -> Iterator[Write]:
    """``write(data, fmt, expected)``: the writer's result, as the task reports it.

    Both shapes of the writer: a raw image from a file is hashed by the reading thread, one
    behind TLS by a hash thread of its own (a compressed image always is).
    """
    # The loop a progress report would wake; none runs (the writer is called directly).
    loop = asyncio.new_event_loop()

    def call(data: bytes, fmt: str, expected: Digest) -> dict[str, object]:
        progress = _Progress(
            loop=loop,
            total=1,
            changed=asyncio.Event(),
            stop=threading.Event(),
            started=time.monotonic(),
        )
        reader = BytesReader(data)
        return write_image(
            disk,
            reader,
            fmt=fmt,
            expected=expected,
            disk_size=len(IMAGE),
            progress=progress,
            hash_while_reading=request.param,
        ).to_json()

    yield call
    loop.close()


def written(disk: BlockTarget) -> bytes:
    return Path(disk.path).read_bytes()[: len(IMAGE)]


def test_a_raw_image_is_written_and_verified_by_blake3(disk: BlockTarget, write: Write) -> None:
    digest = blake3.blake3(IMAGE).hexdigest()
    result = write(IMAGE, "raw", Digest("blake3", digest))
    assert result["blake3"] == digest and result["verified"] and "sha256" not in result
    assert result["bytes_written"] == len(IMAGE) and written(disk) == IMAGE


def test_a_blake3_mismatch_is_an_error_naming_both_digests(disk: BlockTarget, write: Write) -> None:
    recorded = blake3.blake3(IMAGE + b"x").hexdigest()
    with pytest.raises(ImageWriteError) as caught:
        write(IMAGE, "raw", Digest("blake3", recorded))
    message = str(caught.value)
    assert message.startswith("checksum mismatch (blake3)")
    assert blake3.blake3(IMAGE).hexdigest() in message and recorded in message


def test_the_sha256_of_the_image_is_not_what_blake3_checks(disk: BlockTarget, write: Write) -> None:
    # A record's blake3 is checked as a blake3: its sha256 in that place is a mismatch.
    with pytest.raises(ImageWriteError, match=r"checksum mismatch \(blake3\)"):
        write(IMAGE, "raw", Digest("blake3", hashlib.sha256(IMAGE).hexdigest()))


def test_an_image_without_blake3_is_checked_by_sha256(disk: BlockTarget, write: Write) -> None:
    digest = hashlib.sha256(IMAGE).hexdigest()
    result = write(IMAGE, "raw", Digest("sha256", digest))
    assert result["sha256"] == digest and result["verified"] and written(disk) == IMAGE
    with pytest.raises(ImageWriteError, match=r"checksum mismatch \(sha256\)"):
        write(IMAGE, "raw", Digest("sha256", "0" * 64))


def test_a_compressed_image_is_checked_by_the_blake3_of_its_compressed_bytes(
    disk: BlockTarget, write: Write
) -> None:
    packed = zstandard.ZstdCompressor().compress(IMAGE)
    result = write(packed, "raw.zst", Digest("blake3", blake3.blake3(packed).hexdigest()))
    # The written bytes' digest (what the read-back compared) is the disk's, not the source's.
    assert result["blake3"] == blake3.blake3(IMAGE).hexdigest() and written(disk) == IMAGE
    with pytest.raises(ImageWriteError, match=r"checksum mismatch \(blake3\)"):
        write(packed, "raw.zst", Digest("blake3", blake3.blake3(IMAGE).hexdigest()))
