"""The agent's image cache (``standby.cache_images``): verified files within a budget.

Layout of the cache directory, per image id:

- ``<id>.partial``: a download under way (or interrupted: the next run resumes it
  with a range request, after re-hashing what is there);
- ``<id>.img``: the verified bytes, renamed into place only after their digest
  matched the registry's (blake3 when the image's record has one, else sha256);
- ``<id>.json``: the image's metadata, written (temp file, then rename) last.

An entry is valid only when its ``.json`` exists and its ``.img`` has the size
the ``.json`` names: a crash at any moment leaves nothing that looks valid.
"""

from __future__ import annotations

import contextlib
import errno
import json
import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwfleet.agent.hardware.erase import _Progress
from hwfleet.agent.imaging.pipeline import BufferPool, Stage, fill, pwrite_all, start_writeback
from hwfleet.agent.imaging.source import Download, ImageClient, ImageMeta, ImageSourceError
from hwfleet.errors import DeviceError
from hwfleet.images.digest import Hasher

READ = 4 * 1024 * 1024
#: The download's buffers (the pool is BUFFERS x BUFFER bytes whatever the image's size).
BUFFER = 2 * 1024 * 1024
BUFFERS = 8
#: O_DIRECT needs the offset, length and buffer aligned to the filesystem's block size;
#: 4096 covers 512-byte and 4K-sector disks (the pool's buffers are page-aligned).
DIRECT_ALIGN = 4096


class CacheError(DeviceError):
    """The cache cannot take this image (disk full, checksum mismatch, I/O)."""


@dataclass
class CachePlan:
    """What ``cache_images`` will do: download these, keep those, skip the rest (why)."""

    download: list[ImageMeta] = field(default_factory=list)
    present: list[ImageMeta] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)

    @property
    def download_bytes(self) -> int:
        return sum(m.size for m in self.download)


class ImageCache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _paths(self, image_id: str) -> tuple[Path, Path, Path]:
        base = self.directory / image_id
        return base.with_suffix(".img"), base.with_suffix(".json"), base.with_suffix(".partial")

    def lookup(self, image_id: str) -> tuple[ImageMeta, Path] | None:
        """The valid entry for this id (metadata, file), or None."""
        if not image_id.isalnum():
            return None
        img, meta_path, _ = self._paths(image_id)
        try:
            meta = ImageMeta.from_json(json.loads(meta_path.read_text(encoding="utf-8")))
            if img.stat().st_size != meta.size:
                return None
        except (OSError, ValueError, ImageSourceError):
            return None
        return meta, img

    def used(self) -> int:
        """Bytes held by valid entries."""
        total = 0
        for meta_path in self.directory.glob("*.json"):
            entry = self.lookup(meta_path.stem)
            if entry is not None:
                total += entry[0].size
        return total

    def plan(self, metas: list[ImageMeta], budget: int) -> CachePlan:
        """In priority order: keep what is cached, download what fits, skip the rest."""
        plan = CachePlan()
        held = self.used()
        wanted = {m.id for m in metas}
        # Entries not asked for may be evicted to make room: the list is the priority.
        evictable = held - sum(
            entry[0].size for m in metas if (entry := self.lookup(m.id)) is not None
        )
        room = budget - (held - evictable)
        for meta in metas:
            entry = self.lookup(meta.id)
            if entry is not None and _same_image(entry[0], meta):
                if entry[0] != meta:  # cached before the registry recorded a blake3: add it
                    self._write_meta(meta)
                plan.present.append(meta)
                continue
            if meta.size > room:
                plan.skipped.append(
                    {
                        "id": meta.id,
                        "reason": f"needs {meta.size} bytes; {max(room, 0)} left in the "
                        f"cache budget of {budget} bytes",
                    }
                )
                continue
            room -= meta.size
            plan.download.append(meta)
        self._evict(wanted, needed=plan.download_bytes, budget=budget)
        return plan

    def _evict(self, keep: set[str], *, needed: int, budget: int) -> None:
        for meta_path in sorted(self.directory.glob("*.json")):
            if self.used() + needed <= budget:
                return
            if meta_path.stem not in keep:
                self.remove(meta_path.stem)

    def remove(self, image_id: str) -> None:
        img, meta_path, partial = self._paths(image_id)
        for path in (meta_path, img, partial):  # metadata first: never a valid half-entry
            path.unlink(missing_ok=True)

    def fetch(self, client: ImageClient, meta: ImageMeta, progress: _Progress) -> None:
        """Worker thread: download (or resume) ``meta`` into the cache and verify it."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        img, meta_path, partial = self._paths(meta.id)
        meta_path.unlink(missing_ok=True)  # an older entry of this id is no longer valid
        digest = meta.digest
        hasher = digest.hasher()
        try:
            fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise CacheError(
                f"cannot write to the cache {self.directory}: {exc.strerror}"
            ) from None
        direct: int | None = None
        try:
            have = _rehash(fd, hasher, meta.size)
            progress.add(have)
            if have < meta.size:  # a partial already whole (cut before the rename) is just checked
                direct = _open_direct(partial)
                download = client.open(meta.id, have, meta.size)
                try:
                    _download(_Sink(fd, direct), download, have, hasher, progress)
                finally:
                    download.close()
            os.fsync(fd)  # also flushes what went around the page cache, and the disk's cache
        except OSError as exc:
            partial.unlink(missing_ok=True)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise CacheError(
                    f"the cache {self.directory} is full: image {meta.id} ({meta.size} bytes) "
                    "does not fit"
                ) from None
            raise CacheError(f"writing image {meta.id} to the cache failed: {exc}") from None
        finally:
            os.close(fd)
            if direct is not None:
                os.close(direct)
        mismatch = digest.mismatch(f"image {meta.id} as downloaded", hasher.hexdigest())
        if mismatch is not None:
            partial.unlink(missing_ok=True)
            raise CacheError(mismatch)
        os.replace(partial, img)
        self._write_meta(meta)

    def _write_meta(self, meta: ImageMeta) -> None:
        """The entry's ``.json`` through a temp file and a rename: it makes the entry valid."""
        meta_path = self._paths(meta.id)[1]
        tmp = meta_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta.to_json()), encoding="utf-8")
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, meta_path)
        with contextlib.suppress(OSError):
            dir_fd = os.open(self.directory, os.O_RDONLY)
            os.fsync(dir_fd)
            os.close(dir_fd)


def _open_direct(path: Path) -> int | None:
    """A descriptor on ``path`` that writes around the page cache; None where the
    filesystem refuses ``O_DIRECT``."""
    try:
        return os.open(path, os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return None
        raise


class _Sink:
    """The partial file's writes: whole aligned buffers with ``O_DIRECT``, the rest buffered.

    Copying each buffer into the page cache cost more CPU than TLS and hashing together
    (``perf``: ``copy_folio_from_iter_atomic`` took 34-59 % of the download's samples) and
    left a gigabyte of dirty pages for the final ``fsync``; a direct write hands the
    pool's buffer to the disk as it is. A short last buffer, an unaligned resume offset or
    a filesystem refusing direct I/O go through the page cache as before.
    """

    def __init__(self, fd: int, direct: int | None) -> None:
        self.fd, self.direct = fd, direct

    def write(self, buf: mmap.mmap, at: int, count: int) -> None:
        view = memoryview(buf)[:count]
        if self.direct is not None and at % DIRECT_ALIGN == 0 and count % DIRECT_ALIGN == 0:
            try:
                pwrite_all(self.direct, view, at)
                return
            except OSError as exc:
                if exc.errno != errno.EINVAL:  # alignment the disk wants is larger: buffered
                    raise
                self.direct = None
        pwrite_all(self.fd, view, at)
        start_writeback(self.fd, at, count)  # the final fsync then waits for the tail only


def _download(
    sink: _Sink, download: Download, offset: int, hasher: Hasher, progress: _Progress
) -> None:
    """Receive into pooled buffers while a hash thread and a write thread take them in turn.

    TLS decryption (this thread), hashing and the file writes all release the GIL, so they
    overlap instead of adding up.
    """
    pool = BufferPool(BUFFERS, BUFFER)

    def hash_received(buf: mmap.mmap, _offset: int, count: int) -> None:
        hasher.update(memoryview(buf)[:count])

    hashing = Stage("cache-hash", hash_received, pool)

    writer = Stage("cache-write", sink.write, pool)
    hashing.start()
    writer.start()
    try:
        while True:
            buf = pool.get()
            if writer.error is not None:
                pool.release(buf)
                raise writer.error
            try:
                count = fill(download.readinto, buf)
            except BaseException:
                pool.release(buf)
                raise
            if not count:
                pool.release(buf)
                return
            pool.share(buf, 2)
            hashing.todo.put((buf, offset, count))
            writer.todo.put((buf, offset, count))
            offset += count
            progress.add(count)
    finally:
        hashing.finish()
        writer.finish()
        if writer.error is not None:
            raise writer.error


def _rehash(fd: int, hasher: Hasher, size: int) -> int:
    """Hash what an interrupted download left; its length (a partial beyond ``size`` is reset)."""
    have = os.lseek(fd, 0, os.SEEK_END)
    if have > size:
        os.ftruncate(fd, 0)
        return 0
    offset = 0
    while offset < have:
        block = os.pread(fd, min(READ, have - offset), offset)
        if not block:
            break
        hasher.update(block)
        offset += len(block)
    return offset


def _same_image(cached: ImageMeta, wanted: ImageMeta) -> bool:
    """The cached entry holds ``wanted``'s bytes: same sha256 and no differing blake3.

    An entry cached (and checked by sha256) before the registry recorded blake3 digests
    has none; its bytes matched the registry's sha256, so the blake3 recorded over the
    same bytes describes them too.
    """
    if cached.sha256 != wanted.sha256 or cached.size != wanted.size:
        return False
    return None in (cached.blake3, wanted.blake3) or cached.blake3 == wanted.blake3
