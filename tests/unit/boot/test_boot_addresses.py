"""The boot services refuse a range Kea would serve wrongly, before anything starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from hwfleet.boot.service import BootService
from hwfleet.settings import ServerSettings, SettingsError


def service(tmp_path: Path, **settings: Any) -> BootService:
    s = ServerSettings(data_dir=str(tmp_path), boot_interface="eth9", **settings)
    return BootService(
        s, cast(Any, None), cast(Any, None), cast(Any, None), issue_token=cast(Any, None)
    )


@pytest.mark.parametrize(
    ("settings", "message", "setting"),
    [
        ({"dhcp_range": "10.9.9.1-10.9.9.5"}, "not in the subnet", "dhcp_range"),
        ({"dhcp_range": "10.0.0.1-10.0.0.9"}, "server's own address", "dhcp_range"),
        ({}, "or --dhcp-proxy beside", "dhcp_range"),
        ({"dhcp_proxy": True}, "needs --dhcp-range", "dhcp_range"),
        ({"dhcp_proxy": True, "boot_kea_launcher": "ip netns exec x"}, "nothing to launch",
         "boot_kea_launcher"),
    ],
)  # fmt: skip
async def test_bad_boot_settings(
    tmp_path: Path, settings: dict[str, Any], message: str, setting: str
) -> None:
    boot = service(tmp_path, boot_server_ip="10.0.0.1", **settings)
    with pytest.raises(SettingsError, match=message) as err:
        await boot._addresses()
    assert err.value.setting == setting


async def test_proxy_mode_takes_the_site_range(
    tmp_path: Path,
) -> None:
    boot = service(
        tmp_path, boot_server_ip="10.0.0.1", dhcp_proxy=True, dhcp_range="10.0.0.50-10.0.0.60"
    )
    server_ip, pool = await boot._addresses()
    assert server_ip == "10.0.0.1" and str(pool) == "10.0.0.50-10.0.0.60"
