"""Uploads that unpack past ``image_max_disk_size`` (decompression bombs) are refused, bounded.

A real controller with a small limit (32 MiB) gets, through the real CLI and the REST route:
a gzip and a zstd bomb (each a few kilobytes, unpacking to gigabytes), a qcow2 whose
virtual size is a terabyte, and a raw upload larger than the limit (refused while it is
still streaming). Each is refused with 413 and a message naming the limit and the
setting, leaves no file in the image directory and no registry row, and the controller's
memory does not grow by the bomb's size. An image just under the limit is accepted.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import resource
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import zstandard
from tests.conftest import service_missing
from tests.integration.controller.conftest import cli, controller_settings, running_controller
from tests.integration.imaging.conftest import MIB, add_image

from hwfleet.controller.app import Controller

LIMIT = 32 * MIB
GIB = 1024 * MIB


@pytest.fixture
async def limited(tmp_path: Path) -> AsyncIterator[Controller]:
    settings = controller_settings(tmp_path / "controller", image_max_disk_size=LIMIT)
    async with running_controller(settings) as ctl:
        yield ctl


def gzip_bomb(path: Path, size: int) -> None:
    """``size`` zero bytes as gzip members of 1 MiB each (about 1/1000 of ``size``).

    Concatenated members are one valid gzip stream (what pigz writes), and repeating one
    small member is instant where deflating a gigabyte takes a minute.
    """
    member = gzip.compress(bytes(MIB), compresslevel=9)
    with path.open("wb") as sink:
        for _ in range(size // MIB):
            sink.write(member)


def zstd_bomb(path: Path, size: int) -> None:
    frame = zstandard.ZstdCompressor().compress(bytes(MIB))
    with path.open("wb") as sink:
        for _ in range(size // MIB):
            sink.write(frame)


def assert_nothing_kept(controller: Controller) -> None:
    leftovers = list(controller.images.directory.iterdir())
    assert leftovers == [], leftovers


async def assert_refused(controller: Controller, path: Path, *words: str) -> None:
    code, _, err = await cli(controller, "images", "add", str(path), "--json")
    assert code == 1, err
    assert "413" in err and "image_max_disk_size" in err, err
    for word in words:
        assert word in err, err
    assert_nothing_kept(controller)


async def test_bombs_and_oversized_uploads_are_refused(limited: Controller, tmp_path: Path) -> None:
    bombs = {"raw.gz": tmp_path / "bomb.raw.gz", "raw.zst": tmp_path / "bomb.raw.zst"}
    gzip_bomb(bombs["raw.gz"], GIB)
    zstd_bomb(bombs["raw.zst"], 4 * GIB)
    assert os.path.getsize(bombs["raw.gz"]) < 4 * MIB  # one batch: refused once it is read
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    for path in bombs.values():
        await assert_refused(limited, path, f"more than {LIMIT} bytes")
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    # The old measurement inflated a whole 4 MiB batch at once: gigabytes for these bombs.
    assert grown < 64 * MIB, f"the controller's peak memory grew by {grown} bytes"

    # Larger than the limit as it streams: refused at the batch that passes it, mid-upload.
    raw = tmp_path / "big.raw"
    raw.write_bytes(os.urandom(LIMIT + 12 * MIB))
    await assert_refused(limited, raw)

    # A bomb member first, then 24 MiB more: refused mid-stream, before it is all sent.
    multi = tmp_path / "multi.raw.gz"
    gzip_bomb(multi, GIB)
    with multi.open("ab") as sink:
        for _ in range(3):  # members of random data: ~8 MiB compressed each
            sink.write(gzip.compress(os.urandom(8 * MIB), compresslevel=1))
    await assert_refused(limited, multi)

    # Just under the limit is fine, and measured exactly.
    fits = tmp_path / "fits.raw.gz"
    fits.write_bytes(gzip.compress(bytes(LIMIT - MIB)))
    doc = await add_image(limited, fits, "--name", "fits")
    assert doc["disk_size"] == LIMIT - MIB
    code, out, _ = await cli(limited, "images", "list", "--json")
    assert code == 0 and '"fits"' in out and "bomb" not in out


async def test_rest_upload_of_a_bomb_gets_413(limited: Controller, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.raw.zst"
    zstd_bomb(bomb, 4 * GIB)
    async with httpx.AsyncClient(base_url=limited.api_url, timeout=60) as client:
        reply = await client.post(
            "/api/v1/images",
            params={"name": "bomb"},
            content=bomb.read_bytes(),
            headers={"Authorization": f"Bearer {limited.operator_token}"},
        )
    assert reply.status_code == 413, reply.text
    assert "HWFLEET_IMAGE_MAX_DISK_SIZE" in reply.json()["detail"]
    assert_nothing_kept(limited)


async def test_qcow2_with_a_huge_virtual_size_is_refused_before_conversion(
    limited: Controller, tmp_path: Path
) -> None:
    if shutil.which("qemu-img") is None:
        service_missing("qemu-img is not installed (Debian: qemu-utils)")
    image = tmp_path / "huge.qcow2"
    command = ["qemu-img", "create", "-q", "-f", "qcow2", str(image), "1T"]
    await asyncio.to_thread(subprocess.run, command, check=True)
    await assert_refused(limited, image, "qcow2 describes a 1099511627776-byte disk")
