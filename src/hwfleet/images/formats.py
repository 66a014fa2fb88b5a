"""Image formats by magic number, and measuring a compressed upload's disk size (bounded).

Formats: ``raw`` (anything without a known magic), ``raw.gz`` (gzip),
``raw.zst`` (zstandard) and ``qcow2`` (converted to raw at upload with
``qemu-img``: a qcow2 cannot be streamed onto a disk). The decompressors here only
measure (the agent's own, in :mod:`hwfleet.agent.imaging.readers`, write); both handle
multi-member gzip and multi-frame zstd, as ``pigz``/``zstd -T`` produce.
"""

from __future__ import annotations

import zlib
from typing import Any, Protocol, cast

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
QCOW2_MAGIC = b"QFI\xfb"
#: Bytes :func:`detect` needs to decide.
MAGIC_BYTES = 4
SERVED = ("raw", "raw.gz", "raw.zst")
FORMATS = (*SERVED, "qcow2")


class ImageFormatError(ValueError):
    """The bytes are not what the image claims to be (corrupt or truncated compression)."""


class ImageTooLargeError(ImageFormatError):
    """The image unpacks to more than the registry's limit (a decompression bomb, or a
    disk bigger than the operator allows)."""


def detect(head: bytes) -> str:
    """The format whose magic starts ``head``; ``raw`` when none does."""
    if head.startswith(GZIP_MAGIC):
        return "raw.gz"
    if head.startswith(ZSTD_MAGIC):
        return "raw.zst"
    if head.startswith(QCOW2_MAGIC):
        return "qcow2"
    return "raw"


def too_large(limit: int) -> ImageTooLargeError:
    return ImageTooLargeError(
        f"the image unpacks to more than {limit} bytes, the limit (image_max_disk_size, "
        "HWFLEET_IMAGE_MAX_DISK_SIZE): refused"
    )


class Decompressor(Protocol):
    """Measures a compressed stream's decompressed size without holding it.

    Output is produced in chunks of at most :data:`OUT_CHUNK` bytes and dropped once
    counted, and :class:`ImageTooLargeError` is raised as soon as the total passes
    ``limit``: a gigabyte of zeros compresses to a kilobyte (zstd) or a megabyte (gzip),
    so a small upload must not make the controller inflate it whole, in memory or in time.
    """

    @property
    def total(self) -> int:
        """Decompressed bytes so far."""
        ...

    def feed(self, data: bytes | memoryview) -> None: ...

    def finish(self) -> None:
        """Raise :class:`ImageFormatError` if the stream ended inside a member/frame."""


#: The most decompressed bytes held at once while measuring.
OUT_CHUNK = 1024 * 1024


class _Gzip:
    def __init__(self, limit: int) -> None:
        self._z = zlib.decompressobj(wbits=31)
        self._mid = False
        self.limit = limit
        self.total = 0

    def feed(self, data: bytes | memoryview) -> None:
        pending: bytes | memoryview = data
        try:
            while True:
                out = len(self._z.decompress(pending, OUT_CHUNK))
                self.total += out
                if self.total > self.limit:
                    raise too_large(self.limit)
                if self._z.eof:
                    # Another gzip member may follow (pigz, concatenated files).
                    pending = self._z.unused_data
                    self._z = zlib.decompressobj(wbits=31)
                    self._mid = False
                    if not pending:
                        return
                    continue
                pending = self._z.unconsumed_tail
                self._mid = True
                # A full chunk may leave output inside zlib even with no input left.
                if not pending and out < OUT_CHUNK:
                    return
        except zlib.error as exc:
            raise ImageFormatError(f"corrupt gzip data: {exc}") from None

    def finish(self) -> None:
        if self._mid:
            raise ImageFormatError("the gzip stream is truncated")


class _Counter:
    """The zstd writer's sink: counts what it is given, refuses past the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0

    def write(self, data: bytes) -> int:
        self.total += len(data)
        if self.total > self.limit:
            raise too_large(self.limit)
        return len(data)


class _Zstd:
    def __init__(self, limit: int) -> None:
        import zstandard

        self._error = zstandard.ZstdError
        self._sink = _Counter(limit)
        # A stream writer hands its output over in write_size pieces (and crosses frames,
        # as ``zstd -T`` makes them), so memory stays at one piece whatever the ratio.
        self._writer = zstandard.ZstdDecompressor().stream_writer(
            cast(Any, self._sink), write_size=OUT_CHUNK
        )

    @property
    def total(self) -> int:
        return self._sink.total

    def feed(self, data: bytes | memoryview) -> None:
        try:
            self._writer.write(data)
        except self._error as exc:
            raise ImageFormatError(f"corrupt zstd data: {exc}") from None

    def finish(self) -> None:
        # zstandard cannot tell a cut frame from a pause; the sha256 of the compressed
        # bytes (checked by every reader) is what catches a truncated download.
        return None


def decompressor(fmt: str, limit: int) -> Decompressor:
    """A size-measuring decompressor for ``fmt`` (``raw.gz`` or ``raw.zst``)."""
    if fmt == "raw.gz":
        return _Gzip(limit)
    if fmt == "raw.zst":
        return _Zstd(limit)
    raise ImageFormatError(
        f"cannot decompress format {fmt!r} (compressed formats: raw.gz, raw.zst)"
    )
