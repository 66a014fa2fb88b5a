"""The optional ``wifi`` list of a simulated device: loaded as written, nonsense named by field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hwfleet.sim.profiles import ProfileError, encode_profile, parse_profile


def profile(wifi: list[dict[str, Any]] | None) -> str:
    device: dict[str, Any] = {"sn": 7, "name": "w"}
    if wifi is not None:
        device["wifi"] = wifi
    return json.dumps({"devices": [device]})


def test_wifi_is_optional_and_round_trips() -> None:
    assert parse_profile(profile(None)).devices[0].wifi == []
    loaded = parse_profile(
        profile([{"ssid": "lab", "signal": 70, "security": "WPA2"}, {"ssid": "café"}])
    )
    assert [(w.ssid, w.signal, w.security) for w in loaded.devices[0].wifi] == [
        ("lab", 70, "WPA2"),
        ("café", 0, ""),
    ]
    again = parse_profile(encode_profile(loaded))
    assert again.devices[0].wifi == loaded.devices[0].wifi


@pytest.mark.parametrize(
    ("wifi", "message"),
    [
        ([{"ssid": ""}], "$.devices[0].wifi[0].ssid: must be 1 to 32 bytes"),
        ([{"ssid": "ok"}, {"ssid": "é" * 17}], "$.devices[0].wifi[1].ssid: must be 1 to 32 bytes"),
        ([{"ssid": "x", "signal": 101}], "$.devices[0].wifi[0].signal: 101 is not -120..100"),
        ([{"ssid": "x", "signal": -121}], "$.devices[0].wifi[0].signal: -121 is not"),
        ([{"ssid": "x", "signal": "strong"}], "$.devices[0].wifi[0].signal: expected int"),
    ],
)
def test_bad_wifi_entries_name_the_field(wifi: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ProfileError) as failed:
        parse_profile(profile(wifi), "p.json")
    assert str(failed.value).startswith(f"p.json: {message}")
