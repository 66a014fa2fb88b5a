"""The image registry: streamed uploads into the data dir, recorded in the store.

An upload is written to a hidden temporary file as it arrives, hashed (sha256
and blake3, in the same pass) and measured on the way, and only renamed to
``<id>.img`` and recorded once it is complete: a failed or interrupted upload
leaves nothing that looks like an image. File work runs in a worker thread in
batches of :data:`BATCH` bytes, so the event loop keeps serving while a large
image streams in.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from hwfleet.errors import HwfleetError
from hwfleet.images.digest import new_hasher
from hwfleet.images.formats import (
    MAGIC_BYTES,
    Decompressor,
    ImageFormatError,
    ImageTooLargeError,
    decompressor,
    detect,
    too_large,
)
from hwfleet.store import Store
from hwfleet.store.images import ImageRecord, new_image_id

MIB = 1024 * 1024
BATCH = 4 * MIB
NAME_MAX = 255
#: The default ``image_max_disk_size``: the largest disk an upload may unpack to.
MAX_DISK_SIZE = 256 * 1024 * MIB


class ImageError(HwfleetError):
    """An upload that cannot become an image (bad format, conversion failed, disk full)."""


class ImageLimitError(ImageError):
    """The upload describes a disk larger than ``image_max_disk_size`` (answered 413)."""


class ImageNotFoundError(ImageError, LookupError):
    """No image has this id."""


class _Upload:
    """Worker-thread side of one upload: file, hash, size and decompressed size.

    Every size is checked against ``limit`` as it grows (the upload's bytes, what they
    decompress to, a qcow2's virtual size), so an over-limit image is refused while it
    arrives, before it fills the disk, the memory or an hour of CPU.
    """

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        # Both digests in the same pass: sha256 is the record's shape, blake3 what agents
        # check by (hwfleet.images.digest).
        self.sha = hashlib.sha256()
        self.b3 = new_hasher("blake3")
        self.size = 0
        self.disk_size = 0
        self.format = ""
        self._head = b""
        self._inflate: Decompressor | None = None

    def write(self, data: bytes) -> None:
        if not self.format:
            self._head += data[:MAGIC_BYTES]
            if len(self._head) >= MAGIC_BYTES:
                self._start(self._head)
        if self.size + len(data) > self.limit:
            raise too_large(self.limit)
        if self._inflate is not None:
            self._inflate.feed(data)  # first: a bomb is refused before its bytes are kept
            self.disk_size = self._inflate.total
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        self.sha.update(data)
        self.b3.update(data)
        self.size += len(data)

    def _start(self, head: bytes) -> None:
        self.format = detect(head)
        if self.format in ("raw.gz", "raw.zst"):
            self._inflate = decompressor(self.format, self.limit)

    def finish(self) -> None:
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        if not self.format:
            self._start(self._head)
        if self._inflate is not None:
            self._inflate.finish()
            self.disk_size = self._inflate.total
        else:
            self.disk_size = self.size

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.path.unlink(missing_ok=True)


class ImageRegistry:
    """Images under ``directory`` (``<id>.img``), described by the store's ``images`` table."""

    def __init__(
        self, store: Store, directory: str | os.PathLike[str], max_disk_size: int = MAX_DISK_SIZE
    ) -> None:
        self.store = store
        #: Told ``("added" | "deleted", record)`` after the store has it (the controller
        #: records an ``image.*`` event, so every dashboard's Images page shows it).
        self.on_change: Callable[[str, ImageRecord], Awaitable[None]] | None = None
        self.directory = Path(directory)
        self.max_disk_size = max_disk_size

    def path(self, image_id: str) -> Path:
        if not image_id.isalnum():
            raise ImageNotFoundError(f"no image {image_id!r}")
        return self.directory / f"{image_id}.img"

    async def add(self, chunks: AsyncIterator[bytes], name: str) -> ImageRecord:
        """Store the image streamed by ``chunks``; raises :class:`ImageError`."""
        name = name.strip()
        if not name or len(name) > NAME_MAX or not name.isprintable():
            raise ImageError(f"an image name must be 1 to {NAME_MAX} printable characters")
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        image_id = new_image_id()
        upload = _Upload(
            self.directory / f".upload-{image_id}-{secrets.token_hex(4)}", self.max_disk_size
        )
        try:
            pending: list[bytes] = []
            held = 0
            async for chunk in chunks:
                pending.append(chunk)
                held += len(chunk)
                if held >= BATCH:
                    await asyncio.to_thread(upload.write, b"".join(pending))
                    pending, held = [], 0
            if pending:
                await asyncio.to_thread(upload.write, b"".join(pending))
            await asyncio.to_thread(upload.finish)
            if upload.size == 0:
                raise ImageError("the upload is empty")
            source_format = upload.format
            if source_format == "qcow2":
                await asyncio.to_thread(_convert_qcow2, upload)
            record = ImageRecord(
                id=image_id,
                name=name,
                sha256=upload.sha.hexdigest(),
                blake3=upload.b3.hexdigest(),
                size=upload.size,
                format=upload.format,
                source_format=source_format,
                disk_size=upload.disk_size,
                created_at=datetime.now(UTC),
            )
            os.rename(upload.path, self.path(image_id))
        except ImageFormatError as exc:
            upload.abort()
            kind = ImageLimitError if isinstance(exc, ImageTooLargeError) else ImageError
            raise kind(str(exc)) from None
        except OSError as exc:
            upload.abort()
            raise ImageError(f"cannot store the image: {exc.strerror or exc}") from None
        except BaseException:
            upload.abort()
            raise
        try:
            stored = await self.store.write(lambda tx: tx.images.add(record))
        except BaseException:
            self.path(image_id).unlink(missing_ok=True)
            raise
        await self._changed("added", stored)
        return stored

    async def _changed(self, what: str, record: ImageRecord) -> None:
        if self.on_change is not None:
            await self.on_change(what, record)

    async def get(self, image_id: str) -> ImageRecord:
        async with self.store.tx(readonly=True) as tx:
            record = await tx.images.get(image_id)
        if record is None:
            raise ImageNotFoundError(f"no image {image_id!r}")
        return record

    async def list(self) -> list[ImageRecord]:
        async with self.store.tx(readonly=True) as tx:
            return await tx.images.list()

    async def delete(self, image_id: str) -> ImageRecord:
        record = await self.get(image_id)
        await self.store.write(lambda tx: tx.images.delete(image_id))
        with contextlib.suppress(FileNotFoundError):
            self.path(image_id).unlink()
        await self._changed("deleted", record)
        return record


def _convert_qcow2(upload: _Upload) -> None:
    """Replace the uploaded qcow2 with its raw disk, and measure and hash that instead.

    Its virtual size is read first (``qemu-img info``): a small qcow2 can describe a huge
    disk, which the conversion would write out and the hash read through.
    """
    virtual = _qcow2_virtual_size(upload.path)
    if virtual > upload.limit:
        raise ImageLimitError(
            f"the qcow2 describes a {virtual}-byte disk, more than {upload.limit} bytes, the "
            "limit (image_max_disk_size, HWFLEET_IMAGE_MAX_DISK_SIZE): refused"
        )
    raw = upload.path.with_name(upload.path.name + ".raw")
    try:
        done = subprocess.run(
            ["qemu-img", "convert", "-q", "-f", "qcow2", "-O", "raw", str(upload.path), str(raw)],
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
    except FileNotFoundError:
        raise ImageError("qcow2 images need qemu-img (Debian: qemu-utils)") from None
    if done.returncode != 0:
        raw.unlink(missing_ok=True)
        raise ImageError(f"qemu-img cannot read this qcow2: {done.stderr.strip()[:300]}")
    os.replace(raw, upload.path)
    sha, b3 = hashlib.sha256(), new_hasher("blake3")
    size = 0
    with open(upload.path, "rb") as image:
        while block := image.read(BATCH):
            sha.update(block)
            b3.update(block)
            size += len(block)
    upload.sha, upload.b3 = sha, b3
    upload.size, upload.disk_size, upload.format = size, size, "raw"


def _qcow2_virtual_size(path: Path) -> int:
    command = ["qemu-img", "info", "--output=json", "-f", "qcow2", str(path)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except FileNotFoundError:
        raise ImageError("qcow2 images need qemu-img (Debian: qemu-utils)") from None
    try:
        if done.returncode != 0:
            raise ValueError(done.stderr.strip()[:300])
        return int(json.loads(done.stdout)["virtual-size"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ImageError(f"qemu-img cannot read this qcow2: {exc}") from None
