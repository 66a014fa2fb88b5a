"""Which digest the agent checks an image by, through a real agent, controller and loop devices.

An image added now is checked by its blake3 (the download into the cache, the stream onto
the device and the read-back); one registered before blake3 was recorded (migration 0012
left its ``blake3`` empty, made so here in the store) by its sha256. A mismatch of either
ends the task in ``error`` naming the algorithm and both digests, and leaves no cache
entry that looks valid.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import blake3
import sqlalchemy as sa
from tests.integration.hardware.conftest import Attach
from tests.integration.imaging.conftest import MIB, Agent, add_image, disk_bytes, run

from hwfleet.controller.app import Controller
from hwfleet.store import Tx
from hwfleet.store.images import images


async def set_blake3(controller: Controller, image_id: str, value: str | None) -> None:
    """Rewrite the record's blake3 (None: an image registered before blake3 was recorded)."""

    async def work(tx: Tx) -> None:
        statement = sa.update(images).where(images.c.id == image_id).values(blake3=value)
        await tx.conn.execute(statement)

    await controller.store.write(work)


def task_of(reply: dict[str, Any]) -> dict[str, Any]:
    task = reply["task"]
    assert isinstance(task, dict), reply
    return task


def no_valid_entry(agent: Agent) -> bool:
    return not list(agent.cache_dir.glob("*.json")) and not list(agent.cache_dir.glob("*.img"))


async def test_a_blake3_mismatch_is_caught_on_download_and_on_write(
    controller: Controller, agent: Agent, loop_device: Attach, random_image: Path
) -> None:
    doc = await add_image(controller, random_image)
    data = random_image.read_bytes()
    assert doc["blake3"] == blake3.blake3(data).hexdigest()
    # The bytes still match the record's sha256: only a check by blake3 can catch this.
    wrong = blake3.blake3(data + b"!").hexdigest()
    await set_blake3(controller, doc["id"], wrong)

    task = task_of(await run(controller, agent, "standby.cache_images", images=[doc["id"]]))
    assert task["state"] == "error", task
    assert "checksum mismatch (blake3)" in task["msg"] and wrong in task["msg"]
    assert doc["blake3"] in task["msg"]  # what the bytes really hash to
    assert no_valid_entry(agent) and not list(agent.cache_dir.glob("*.partial"))

    device = loop_device(16 * MIB)
    reply = await run(controller, agent, "standby.prepare_image", image=doc["id"], device=device)
    task = task_of(reply)
    assert task["state"] == "error", task
    assert "checksum mismatch (blake3)" in task["msg"] and wrong in task["msg"]
    assert "cli_error" not in await run(controller, agent, "ping")  # the agent keeps serving

    await set_blake3(controller, doc["id"], doc["blake3"])
    reply = await run(controller, agent, "standby.prepare_image", image=doc["id"], device=device)
    task = task_of(reply)
    assert task["state"] == "complete", task
    # The written bytes' blake3, compared with the device's read back.
    assert task["result"]["blake3"] == doc["blake3"] and task["result"]["verified"]
    assert disk_bytes(device, len(data)) == data


async def test_an_image_without_blake3_is_checked_by_sha256(
    controller: Controller, agent: Agent, loop_device: Attach, random_image: Path
) -> None:
    doc = await add_image(controller, random_image)
    data = random_image.read_bytes()
    await set_blake3(controller, doc["id"], None)

    task = task_of(await run(controller, agent, "standby.cache_images", images=[doc["id"]]))
    assert task["state"] == "complete", task
    cached = json.loads((agent.cache_dir / f"{doc['id']}.json").read_text())
    assert cached["blake3"] is None and cached["sha256"] == hashlib.sha256(data).hexdigest()

    device = loop_device(16 * MIB)
    reply = await run(controller, agent, "standby.prepare_image", image=doc["id"], device=device)
    task = task_of(reply)
    assert task["state"] == "complete", task
    assert task["result"]["source"] == "cache" and "blake3" not in task["result"]
    assert task["result"]["sha256"] == doc["sha256"] and task["result"]["verified"]
    assert disk_bytes(device, len(data)) == data

    # The registry records blake3 now: the entry (checked by sha256) is kept and gains it.
    await set_blake3(controller, doc["id"], doc["blake3"])
    task = task_of(await run(controller, agent, "standby.cache_images", images=[doc["id"]]))
    assert task["state"] == "complete", task
    assert task["result"]["cached"] == [{"id": doc["id"], "size": len(data), "downloaded": False}]
    cached = json.loads((agent.cache_dir / f"{doc['id']}.json").read_text())
    assert cached["blake3"] == doc["blake3"]

    # A sha256 mismatch is still caught and named.
    second = await add_image(controller, random_image)
    await set_blake3(controller, second["id"], None)
    stored = controller.images.path(second["id"])
    with stored.open("r+b") as handle:
        handle.seek(MIB)
        byte = handle.read(1)
        handle.seek(MIB)
        handle.write(bytes([byte[0] ^ 0xFF]))
    reply = await run(controller, agent, "standby.prepare_image", image=second["id"], device=device)
    task = task_of(reply)
    assert task["state"] == "error", task
    assert "checksum mismatch (sha256)" in task["msg"] and second["sha256"] in task["msg"]
