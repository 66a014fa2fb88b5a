"""What the image writer pulls from with ``readinto``: a file, a download, a decompressor.

Pulling into a buffer the caller owns (instead of iterating over chunks) lets the
writer fill its page-aligned ``O_DIRECT`` buffers in place, and keeps decompression
bounded: a disk image is mostly zeros, a gigabyte of zeros compresses to a few
kilobytes, and a decompressor that returned everything one input chunk yields would
make memory grow with the image instead of staying flat.
"""

from __future__ import annotations

import errno
import mmap
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, cast

from hwfleet.images.digest import Hasher
from hwfleet.images.formats import ImageFormatError

#: madvise(2)'s MADV_POPULATE_READ (Linux 5.14); Python 3.11's mmap module does not name it.
MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)
#: Compressed input read per step (decompressed output goes straight into the caller's buffer).
IN_CHUNK = 1024 * 1024


class Reader(Protocol):
    def readinto(self, view: memoryview) -> int:
        """Fill the start of ``view``; the count, 0 at the end."""
        ...


class FileReader:
    """A cached image file, read through the page cache (it was often just downloaded)."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        os.posix_fadvise(self._file.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)

    def readinto(self, view: memoryview) -> int:
        return self._file.readinto(view) or 0

    def size(self) -> int:
        return os.fstat(self._file.fileno()).st_size

    def map(self, offset: int, length: int) -> mmap.mmap:
        """``length`` bytes at ``offset`` (a multiple of the page size), mapped read-only.

        The zero-copy path of the writer (:mod:`.writer`) hashes and writes straight from
        the page cache's pages. Shared, so the pages *are* the page cache's (no private
        copy); populated up front with ``MADV_POPULATE_READ``, because one call that maps
        every page is far cheaper than a page fault per 64 KiB while hashing, and because it
        reports a page that cannot be read as an ``OSError`` (``EIO``) where touching the
        page would kill the process with SIGBUS. A kernel before 5.14 lacks it: the pages
        are then faulted in as hashed.
        """
        window = mmap.mmap(
            self._file.fileno(), length, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ, offset=offset
        )
        try:
            if hasattr(mmap, "MADV_SEQUENTIAL"):  # read-ahead of what follows, early reclaim
                window.madvise(mmap.MADV_SEQUENTIAL)
            window.madvise(MADV_POPULATE_READ)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: a kernel without it; else unreadable
                window.close()
                raise
        return window

    def close(self) -> None:
        self._file.close()


class CountingReader:
    """Counts the source's bytes for the progress, and hashes them when ``sha`` is given
    (a :class:`~hwfleet.images.digest.Hasher`: sha256 or blake3)."""

    def __init__(
        self, inner: Reader, progress: Callable[[int], None], sha: Hasher | None = None
    ) -> None:
        self._inner, self._progress, self.sha = inner, progress, sha

    def readinto(self, view: memoryview) -> int:
        count = self._inner.readinto(view)
        if count and self.sha is not None:
            self.sha.update(view[:count])  # both hashers drop the GIL on large buffers
        self._progress(count)
        return count

    def read(self, size: int = IN_CHUNK) -> bytearray:
        """For ``zstandard``'s stream reader, which pulls with ``read``."""
        buffer = bytearray(size)
        count = self.readinto(memoryview(buffer))
        del buffer[count:]
        return buffer


class GzipReader:
    """gzip decompression, output bounded by the caller's buffer; several members (pigz)."""

    def __init__(self, inner: Reader) -> None:
        self._inner = inner
        self._z = zlib.decompressobj(wbits=31)
        self._input = memoryview(bytearray(IN_CHUNK))
        self._pending: bytes | memoryview = b""
        self._mid = False

    def readinto(self, view: memoryview) -> int:
        while True:
            if self._pending:
                try:
                    out = self._z.decompress(self._pending, len(view))
                except zlib.error as exc:
                    raise ImageFormatError(f"corrupt gzip data: {exc}") from None
                if self._z.eof:  # another member may follow (pigz, concatenated files)
                    self._pending = self._z.unused_data
                    self._z = zlib.decompressobj(wbits=31)
                    self._mid = False
                else:
                    self._pending = self._z.unconsumed_tail
                    self._mid = True
                if out:
                    view[: len(out)] = out
                    return len(out)
                continue
            count = self._inner.readinto(self._input)
            if not count:
                if self._mid:
                    raise ImageFormatError("the gzip stream is truncated")
                return 0
            self._pending = self._input[:count]


class ZstdReader:
    """zstd decompression across frames (``zstd -T``), output bounded by the caller's buffer.

    A frame cut short is not an error to ``zstandard``; the digest of the compressed bytes,
    which every reader checks, is what catches a truncated download.
    """

    def __init__(self, inner: CountingReader) -> None:
        import zstandard

        self._error = zstandard.ZstdError
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            cast(Any, inner), read_size=IN_CHUNK, read_across_frames=True, closefd=False
        )

    def readinto(self, view: memoryview) -> int:
        try:
            return int(self._reader.readinto(view))
        except self._error as exc:
            raise ImageFormatError(f"corrupt zstd data: {exc}") from None


def decompressing(fmt: str, source: CountingReader) -> Reader:
    """The decompressed bytes of ``source`` in format ``fmt``."""
    if fmt == "raw":
        return source
    if fmt == "raw.gz":
        return GzipReader(source)
    if fmt == "raw.zst":
        return ZstdReader(source)
    raise ImageFormatError(f"cannot stream format {fmt!r} (served formats: raw, raw.gz, raw.zst)")
