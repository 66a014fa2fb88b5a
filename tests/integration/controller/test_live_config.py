"""Live settings take effect where they are used, not only in the configuration store."""

from __future__ import annotations

from hwfleet.controller.app import Controller


async def test_scan_quiet_timeout_set_live_applies_to_the_next_scan(
    controller: Controller,
) -> None:
    before = await controller.scans.start([])
    assert before.quiet_timeout == controller.settings.scan_quiet_timeout
    await controller.scans.finish(before.operationid, "test")  # one scan runs at a time
    await controller.config.set("scan.quiet_timeout", 42.5)
    after = await controller.scans.start([])
    assert after.quiet_timeout == 42.5
    await controller.scans.finish(after.operationid, "test")
    explicit = await controller.scans.start([], quiet_timeout=3.0)
    assert explicit.quiet_timeout == 3.0
