"""Image formats by magic number, and streaming decompression (shared with the agent).

Formats: ``raw`` (anything without a known magic), ``raw.gz`` (gzip),
``raw.zst`` (zstandard) and ``qcow2`` (converted to raw at upload with
``qemu-img``: a qcow2 cannot be streamed onto a disk). Decompressors handle
multi-member gzip and multi-frame zstd, as ``pigz``/``zstd -T`` produce.
"""

from __future__ import annotations

import zlib
from typing import Protocol

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
QCOW2_MAGIC = b"QFI\xfb"
#: Bytes :func:`detect` needs to decide.
MAGIC_BYTES = 4
SERVED = ("raw", "raw.gz", "raw.zst")
FORMATS = (*SERVED, "qcow2")


class ImageFormatError(ValueError):
    """The bytes are not what the image claims to be (corrupt or truncated compression)."""


def detect(head: bytes) -> str:
    """The format whose magic starts ``head``; ``raw`` when none does."""
    if head.startswith(GZIP_MAGIC):
        return "raw.gz"
    if head.startswith(ZSTD_MAGIC):
        return "raw.zst"
    if head.startswith(QCOW2_MAGIC):
        return "qcow2"
    return "raw"


class Decompressor(Protocol):
    #: True when ``feed`` returns its input unchanged (raw images).
    identity: bool

    def feed(self, data: bytes | memoryview) -> bytes | memoryview: ...

    def finish(self) -> None:
        """Raise :class:`ImageFormatError` if the stream ended inside a member/frame."""


class _Raw:
    identity = True

    def feed(self, data: bytes | memoryview) -> bytes | memoryview:
        return data

    def finish(self) -> None:
        return None


class _Gzip:
    identity = False

    def __init__(self) -> None:
        self._z = zlib.decompressobj(wbits=31)
        self._mid = False

    def feed(self, data: bytes | memoryview) -> bytes | memoryview:
        out: list[bytes] = []
        pending = bytes(data)
        try:
            while pending:
                out.append(self._z.decompress(pending))
                self._mid = not self._z.eof
                if not self._z.eof:
                    break
                # Another gzip member follows (pigz, concatenated files).
                pending = self._z.unused_data
                self._z = zlib.decompressobj(wbits=31)
        except zlib.error as exc:
            raise ImageFormatError(f"corrupt gzip data: {exc}") from None
        return b"".join(out)

    def finish(self) -> None:
        if self._mid:
            raise ImageFormatError("the gzip stream is truncated")


class _Zstd:
    identity = False

    def __init__(self) -> None:
        import zstandard

        self._error = zstandard.ZstdError
        self._d = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)

    def feed(self, data: bytes | memoryview) -> bytes | memoryview:
        try:
            return self._d.decompress(bytes(data))
        except self._error as exc:
            raise ImageFormatError(f"corrupt zstd data: {exc}") from None

    def finish(self) -> None:
        # zstandard's decompressobj cannot tell a cut frame from a pause; the sha256 of the
        # compressed bytes (checked by every reader) is what catches a truncated download.
        return None


def decompressor(fmt: str) -> Decompressor:
    if fmt == "raw":
        return _Raw()
    if fmt == "raw.gz":
        return _Gzip()
    if fmt == "raw.zst":
        return _Zstd()
    raise ImageFormatError(f"cannot stream format {fmt!r} (served formats: {', '.join(SERVED)})")
