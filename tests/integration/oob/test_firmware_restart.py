"""A firmware update through the BMC survives a controller restart: the new controller takes
the task over from its row and waits on the BMC's task monitor instead of flashing again."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
from tests.oob_support.emulators import Redfish

from hwfleet.controller.app import Controller
from hwfleet.oob.driver import BmcAddress
from hwfleet.settings import ServerSettings

from .test_controller_oob import api, cli, controller_settings, wait_for

NODE = str(uuid.UUID(int=9))


def settings(tmp_path: Path) -> ServerSettings:
    # Rows untouched this long are orphans: the restarted controller takes them at once.
    return controller_settings(tmp_path, bmc_task_stale=0.05)


async def task_row(client: httpx.AsyncClient, task_id: str, wait: float = 0) -> dict[str, Any]:
    r = await client.get(f"/api/v1/tasks/{task_id}", params={"wait": wait})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_a_restarted_controller_resumes_the_wait(
    tmp_path: Path, redfish: Redfish, images: tuple[str, str]
) -> None:
    url, sha = images
    document = {
        "bios": {"ProcTurboMode": "Disabled"},
        "firmware": [{"component": "BIOS", "version": "1.2.0", "image": url, "sha256": sha}],
    }
    redfish.control("slow_update", {"on": True})
    first = Controller(settings(tmp_path))
    await first.start()
    try:
        assert first.oob is not None
        await first.oob.service.set_bmc(
            NODE,
            BmcAddress(
                driver="redfish", address=redfish.url, username="admin", password=redfish.password
            ),
        )
        async with api(first) as client:
            r = await client.post(f"/api/v1/nodes/{NODE}/firmware", json={"spec": document})
            assert r.status_code == 200, r.text
            task_id = r.json()["task"]["id"]

            async def flashing() -> Any:
                row = await task_row(client, task_id)
                current = ((row["result"] or {}).get("checkpoint") or {}).get("current") or {}
                return row if current.get("monitor") else None

            row = await wait_for(flashing)
        assert row["state"] == "running" and "installing" in row["msg"]
        # While it runs, `hwfleet tasks` shows it with its percent.
        code, out, err = await cli(first, "tasks", "--json")
        assert code == 0, err
        listed = next(t for t in json.loads(out) if t["id"] == task_id)
        assert listed["state"] == "running" and listed["percent"] >= 5
    finally:
        await first.close()  # mid-flash

    second = Controller(settings(tmp_path))
    await second.start()
    try:
        redfish.control("task", {"id": "1", "finish": True})
        async with api(second) as client:

            async def ended() -> Any:
                row = await task_row(client, task_id, wait=1.0)
                return row if row["state"] in ("complete", "error", "lost") else None

            done = await wait_for(ended, 60)
        assert done["state"] == "complete", done["msg"]
        assert done["result"]["changed"] == [
            {"firmware": "BIOS", "from": "1.0.0", "to": "1.2.0"},
            {"bios": "ProcTurboMode", "from": "Enabled", "to": "Disabled"},
        ]
        assert redfish.state()["updates"] == 1  # resumed, not flashed a second time
    finally:
        await second.close()
