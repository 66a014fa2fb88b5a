"""``standby.cache_images`` and ``standby.prepare_image`` (seed 001; ``standbye.*`` too).

Both are long tasks: the reply is ``{"task_id", "status": "running"}`` and the
outcome arrives through the task status (percent and ETA on the way). A target
the erase would refuse is refused before the task starts, with the same words;
every later failure (unknown image, checksum, truncated download, full cache,
device too small or gone) ends the task in ``error`` naming the cause, and the
agent goes on serving. ``standby.run_image`` is in :mod:`.run`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import msgspec

from hwfleet.agent.hardware.erase import EraseError, _Progress, _report, _run_reporting
from hwfleet.agent.hardware.protect import BlockTarget, ProtectedDeviceError, inspect_target
from hwfleet.agent.imaging.cache import CacheError, ImageCache
from hwfleet.agent.imaging.config import ImagingConfig
from hwfleet.agent.imaging.readers import FileReader
from hwfleet.agent.imaging.source import Download, ImageMeta, ImageSourceError
from hwfleet.agent.imaging.writer import ImageWriteError, SourceDamagedError, write_image
from hwfleet.agent.tasks import Report, TaskFailedError
from hwfleet.protocol import methods
from hwfleet.protocol.errors import ErrorCode, MethodError

if TYPE_CHECKING:
    from hwfleet.agent.runtime import AgentRuntime

log = logging.getLogger(__name__)

#: Failures that end a task in ``error`` with their own message.
FAILURES = (ImageSourceError, ImageWriteError, CacheError, ProtectedDeviceError, EraseError)


def _check_id(image: str) -> str:
    if not image or not image.isalnum() or len(image) > 64:
        raise ValueError(f"{image!r} is not an image id (hex digits from `hwfleet images list`)")
    return image


class CacheImagesParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    task_id: str
    images: list[str]

    def __post_init__(self) -> None:
        if not self.images:
            raise ValueError("images must name at least one image id, in priority order")
        for image in self.images:
            _check_id(image)


class PrepareImageParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    task_id: str
    image: str
    device: str
    verify: bool = True

    def __post_init__(self) -> None:
        _check_id(self.image)
        if not self.device.strip():
            raise ValueError("device must name the target block device explicitly")


def new_progress(total: int) -> _Progress:
    return _Progress(
        loop=asyncio.get_running_loop(),
        total=total,
        changed=asyncio.Event(),
        stop=threading.Event(),
        started=time.monotonic(),
    )


def target_of(rt: AgentRuntime, device: str) -> BlockTarget:
    """The checked target: a real block device, or a simulated device's disk file."""
    if rt.simulated:
        from hwfleet.agent.imaging.simdisk import simulated_disk

        return simulated_disk(rt, device)
    return refuse_protected(device)


def refuse_protected(device: str) -> BlockTarget:
    """The erase's own check (:func:`inspect_target`): a refusal before any task starts."""
    try:
        return inspect_target(device)
    except ProtectedDeviceError as exc:
        raise MethodError(str(exc), ErrorCode.REFUSED) from None


async def cache_images(rt: AgentRuntime, params: CacheImagesParams) -> dict[str, Any]:
    config = ImagingConfig.of(rt)
    cache = ImageCache(config.cache_dir)

    async def work(report: Report) -> dict[str, Any]:
        try:
            client = config.client(rt.info.uuid)
            metas = [await asyncio.to_thread(client.meta, image) for image in params.images]
            budget = await asyncio.to_thread(config.budget_now, cache.used())
            plan = await asyncio.to_thread(cache.plan, metas, budget)
            progress = new_progress(plan.download_bytes)
            await _report(progress, report, 0.0, None)
            for meta in plan.download:
                fetch = functools.partial(cache.fetch, client, meta, progress)
                await _run_reporting(fetch, progress, report)
        except FAILURES as exc:
            raise TaskFailedError(str(exc)) from None
        await _report(progress, report, 100.0, 0.0)
        fetched = {m.id for m in plan.download}
        cached = [
            {"id": m.id, "size": m.size, "downloaded": m.id in fetched}
            for m in sorted(plan.present + plan.download, key=lambda m: params.images.index(m.id))
        ]
        return {
            "cached": cached,
            "skipped": plan.skipped,
            "budget": budget,
            "cache_dir": str(config.cache_dir),
        }

    return rt.tasks.start(params.task_id, methods.STANDBY_CACHE_IMAGES, work)


async def stream_image(
    rt: AgentRuntime, target: BlockTarget, image: str, report: Report, *, verify: bool = True
) -> dict[str, Any]:
    """Write ``image`` (from the cache, else the controller) to ``target``; the task's result.

    A cache entry that reads back damaged (its checksum was right when it was cached: the
    disk under the cache went bad, or someone wrote to the file) is removed, and the image
    is written again from the controller in the same task — otherwise every later attempt
    would take the same bad copy until an operator found it by hand.
    """
    try:
        return await _stream_image(rt, target, image, report, verify=verify, use_cache=True)
    except _CachedCopyDamagedError as exc:
        log.warning("image %s: the cached copy is damaged (%s); removed, fetching it", image, exc)
        ImageCache(ImagingConfig.of(rt).cache_dir).remove(image)
        result = await _stream_image(rt, target, image, report, verify=verify, use_cache=False)
        return {**result, "cache_damaged": str(exc)}


class _CachedCopyDamagedError(Exception):
    """A :class:`SourceDamagedError` while reading a cache entry."""


async def _stream_image(
    rt: AgentRuntime,
    target: BlockTarget,
    image: str,
    report: Report,
    *,
    verify: bool,
    use_cache: bool,
) -> dict[str, Any]:
    config = ImagingConfig.of(rt)
    entry = ImageCache(config.cache_dir).lookup(image) if use_cache else None
    meta: ImageMeta
    reader: FileReader | Download
    if entry is not None:
        meta, path = entry
        reader = FileReader(path)
        source = "cache"
    else:
        client = config.client(rt.info.uuid)
        meta = await asyncio.to_thread(client.meta, image)
        reader = await asyncio.to_thread(client.open, image, 0, meta.size)
        source = client.where
    progress = new_progress(meta.size + (meta.disk_size if verify else 0))
    write = functools.partial(
        write_image,
        target,
        reader,
        fmt=meta.format,
        expected=meta.digest,
        disk_size=meta.disk_size,
        progress=progress,
        verify=verify,
        hash_while_reading=isinstance(reader, FileReader),
    )
    begun = time.monotonic()
    try:
        await _report(progress, report, 0.0, None)
        result = await _run_reporting(write, progress, report)
    except SourceDamagedError as exc:
        if source == "cache":
            raise _CachedCopyDamagedError(str(exc)) from None
        raise
    finally:
        reader.close()
    seconds = time.monotonic() - begun
    await _report(progress, report, 100.0, 0.0)
    return {
        **result.to_json(),
        "image": meta.id,
        "source": source,
        "seconds": round(seconds, 3),
        "mb_per_s": round(result.bytes_written / max(seconds, 1e-6) / 1e6, 1),
    }


async def prepare_image(rt: AgentRuntime, params: PrepareImageParams) -> dict[str, Any]:
    target = target_of(rt, params.device)

    async def work(report: Report) -> dict[str, Any]:
        try:
            return await stream_image(rt, target, params.image, report, verify=params.verify)
        except FAILURES as exc:
            raise TaskFailedError(str(exc)) from None

    return rt.tasks.start(params.task_id, methods.STANDBY_PREPARE_IMAGE, work)
