"""The image writer's decompressing readers: bounded output, several members/frames, errors."""

from __future__ import annotations

import gzip
import hashlib
import io
import os

import pytest
import zstandard

from hwfleet.agent.imaging.readers import CountingReader, decompressing
from hwfleet.images.formats import ImageFormatError

DISK = os.urandom(300_000) + bytes(5_000_000) + os.urandom(1234)


class BytesReader:
    def __init__(self, data: bytes) -> None:
        self._file = io.BytesIO(data)

    def readinto(self, view: memoryview) -> int:
        return self._file.readinto(view)


def read_all(fmt: str, packed: bytes, step: int = 64 * 1024) -> tuple[bytes, CountingReader]:
    counted = CountingReader(BytesReader(packed), lambda _n: None, hashlib.sha256())
    reader = decompressing(fmt, counted)
    out, buffer = bytearray(), bytearray(step)
    while count := reader.readinto(memoryview(buffer)):
        assert count <= step  # never more than the caller's buffer: memory stays bounded
        out += buffer[:count]
    return bytes(out), counted


def test_gzip_several_members_and_the_compressed_hash() -> None:
    half = len(DISK) // 2
    packed = gzip.compress(DISK[:half]) + gzip.compress(DISK[half:])  # as pigz writes
    out, counted = read_all("raw.gz", packed)
    assert out == DISK
    assert counted.sha.hexdigest() == hashlib.sha256(packed).hexdigest()


def test_zstd_several_frames() -> None:
    half = len(DISK) // 2
    packer = zstandard.ZstdCompressor()
    packed = packer.compress(DISK[:half]) + packer.compress(DISK[half:])
    assert read_all("raw.zst", packed)[0] == DISK


def test_truncated_or_corrupt_gzip_names_the_cause() -> None:
    packed = gzip.compress(DISK)
    with pytest.raises(ImageFormatError, match="truncated"):
        read_all("raw.gz", packed[: len(packed) // 2])
    with pytest.raises(ImageFormatError, match="corrupt gzip"):
        read_all("raw.gz", packed[:20] + bytes(200) + packed[220:])


def test_qcow2_cannot_be_streamed() -> None:
    with pytest.raises(ImageFormatError, match="cannot stream"):
        read_all("qcow2", b"QFI\xfb")
