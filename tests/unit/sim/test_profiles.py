"""Simulation profiles: good files load as written, garbage names the field, generate is stable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwfleet.sim.profiles import (
    ProfileError,
    device_uuid,
    encode_profile,
    generate,
    is_mac,
    load_profile,
    normalize_mac,
    parse_profile,
)


def device(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "sn": 1001,
        "name": "unit-1",
        "model_id": "M1",
        "interfaces": [{"name": "enp4s0", "mac": "e0:18:7d:2e:ca:68", "pci": "0000:04:00.0"}],
        "pci": [
            {"address": "0000:04:00.0", "vendor": "0x8086", "device": "0x1533", "class": "0x020000"}
        ],
        "memory_mb": 8192,
        "cpus": [],
        "disks": [],
    }
    base.update(overrides)
    return base


def write(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "profile.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def test_loads_the_design_example_keeping_serial_types(tmp_path: Path) -> None:
    path = write(tmp_path, {"devices": [device(), device(sn="SN-2", interfaces=[])]})
    profile = load_profile(path)
    first, second = profile.devices
    assert first.sn == 1001 and isinstance(first.sn, int)
    assert second.sn == "SN-2"
    assert first.interfaces[0].mac == "e0:18:7d:2e:ca:68"
    assert first.pci[0].class_ == "0x020000"
    assert first.memory_mb == 8192


def test_optional_identity_fields_and_wifi() -> None:
    profile = parse_profile(
        json.dumps(
            {
                "devices": [
                    device(
                        uuid="6F9619FF-8B86-D011-B42D-00C04FC964FF",
                        version="2.1",
                        hostname="h1",
                        wifi=[{"ssid": "lab", "signal": -40, "security": "WPA2"}],
                    )
                ]
            }
        )
    )
    only = profile.devices[0]
    assert only.uuid == "6f9619ff-8b86-d011-b42d-00c04fc964ff"  # canonical form
    assert (only.version, only.hostname) == ("2.1", "h1")
    assert only.wifi[0].ssid == "lab" and only.wifi[0].signal == -40


def nic(**overrides: Any) -> dict[str, Any]:
    return {"name": "eth0", "mac": "02:00:00:00:00:01", **overrides}


GARBAGE: list[tuple[str, Any, str]] = [
    ("empty file", "", "profile.json: $: the file is empty"),
    ("whitespace only", "  \n", "profile.json: $: the file is empty"),
    ("not JSON", "{devices: [}", "profile.json: $: not valid JSON"),
    ("truncated", '{"devices": [', "profile.json: $: not valid JSON"),
    ("a list", [device()], "profile.json: $: expected object, got array"),
    ("no devices key", {"mes": {}}, "profile.json: $.devices: required field is missing"),
    ("devices not a list", {"devices": {}}, "profile.json: $.devices: expected array"),
    ("no devices", {"devices": []}, "profile.json: $.devices: no devices"),
    ("missing sn", {"devices": [{"name": "x"}]}, "$.devices[0].sn: required field is missing"),
    ("float sn", {"devices": [device(sn=1.5)]}, "$.devices[0].sn: expected int | str, got float"),
    ("bool sn", {"devices": [device(sn=True)]}, "$.devices[0].sn: expected int | str, got bool"),
    ("empty sn", {"devices": [device(sn=" ")]}, "$.devices[0].sn: is empty"),
    ("negative sn", {"devices": [device(sn=-4)]}, "$.devices[0].sn: -4 is negative"),
    (
        "duplicate sn across types",
        {"devices": [device(), device(sn="1001", interfaces=[])]},
        "$.devices[1].sn: '1001' repeats the sn of $.devices[0]",
    ),
    ("name not a string", {"devices": [device(name=5)]}, "$.devices[0].name: expected str"),
    (
        "memory negative",
        {"devices": [device(memory_mb=-1)]},
        "$.devices[0].memory_mb: expected int >= 0",
    ),
    (
        "bad MAC",
        {
            "devices": [
                device(sn=1, interfaces=[]),
                device(sn=2, interfaces=[]),
                device(sn=3, interfaces=[]),
                device(interfaces=[nic(mac="zz")]),
            ]
        },
        "profile.json: $.devices[3].interfaces[0].mac: 'zz' is not a MAC address",
    ),
    (
        "MAC with mixed separators",
        {"devices": [device(interfaces=[nic(mac="02:00-00:00:00:01")])]},
        "$.devices[0].interfaces[0].mac: '02:00-00:00:00:01' is not a MAC address",
    ),
    (
        "MAC with seven octets",
        {"devices": [device(interfaces=[nic(mac="02:00:00:00:00:01:02")])]},
        "is not a MAC address",
    ),
    (
        "duplicate MAC across devices",
        {"devices": [device(), device(sn=2, interfaces=[nic(mac="E0-18-7D-2E-CA-68")])]},
        "$.devices[1].interfaces[0].mac: 'E0-18-7D-2E-CA-68' is already used by "
        "$.devices[0].interfaces[0]",
    ),
    (
        "missing mac",
        {"devices": [device(interfaces=[{"name": "eth0"}])]},
        "$.devices[0].interfaces[0].mac: required field is missing",
    ),
    (
        "empty interface name",
        {"devices": [device(interfaces=[nic(name="")])]},
        "$.devices[0].interfaces[0].name: is empty",
    ),
    (
        "duplicate interface name",
        {"devices": [device(interfaces=[nic(), nic(mac="02:00:00:00:00:02")])]},
        "$.devices[0].interfaces[1].name: 'eth0' appears twice",
    ),
    (
        "bad interface PCI",
        {"devices": [device(interfaces=[nic(pci="4:0.0")])]},
        "$.devices[0].interfaces[0].pci: '4:0.0' is not a PCI address",
    ),
    (
        "bad PCI address",
        {
            "devices": [
                device(pci=[{"address": "x", "vendor": "0x1", "device": "0x2", "class": "0"}])
            ]
        },
        "$.devices[0].pci[0].address: 'x' is not a PCI address",
    ),
    (
        "bad PCI vendor",
        {
            "devices": [
                device(
                    pci=[{"address": "00:1f.2", "vendor": "Intel", "device": "0x2", "class": "0"}]
                )
            ]
        },
        "$.devices[0].pci[0].vendor: 'Intel' is not a hex PCI vendor",
    ),
    (
        "PCI missing class",
        {"devices": [device(pci=[{"address": "00:1f.2", "vendor": "0x1", "device": "0x2"}])]},
        "$.devices[0].pci[0].class: required field is missing",
    ),
    ("bad uuid", {"devices": [device(uuid="nope")]}, "$.devices[0].uuid: 'nope' is not a UUID"),
    (
        "duplicate disk",
        {"devices": [device(disks=[{"name": "sda", "size": 1}, {"name": "sda", "size": 2}])]},
        "$.devices[0].disks[1].name: 'sda' appears twice",
    ),
    (
        "negative disk size",
        {"devices": [device(disks=[{"name": "sda", "size": -1}])]},
        "$.devices[0].disks[0].size: -1 is negative",
    ),
    ("cpus wrong type", {"devices": [device(cpus=[3])]}, "$.devices[0].cpus[0]: expected"),
    (
        "misspelled device field",
        {"devices": [device(sn=1, interfaces=[]), device(sn=7, interfces=[nic()])]},
        "$.devices[1].interfces: unknown field in device sn 7 (did you mean 'interfaces'?)",
    ),
    (
        "misspelled NIC field",
        {
            "devices": [
                device(interfaces=[{"name": "eth0", "mac": "02:00:00:00:00:01", "pcie": ""}])
            ]
        },
        "$.devices[0].interfaces[0].pcie: unknown field in device sn 1001 (did you mean 'pci'?)",
    ),
    (
        "unknown PCI, CPU and disk fields",
        {"devices": [device(disks=[{"name": "sda", "sise": 1}])]},
        "$.devices[0].disks[0].sise: unknown field in device sn 1001 (did you mean 'size'?)",
    ),
    (
        "unknown top-level key",
        {"devices": [device()], "hosts": []},
        "profile.json: $.hosts: unknown field (known: devices, mes)",
    ),
    (
        "unknown mes key",
        {"devices": [device()], "mes": {"record": {}}},
        "$.mes.record: unknown field (did you mean 'records'?)",
    ),
    (
        "wifi without ssid",
        {"devices": [device(wifi=[{"signal": 3}])]},
        "$.devices[0].wifi[0].ssid: required field is missing",
    ),
]


@pytest.mark.parametrize(("case", "document", "message"), GARBAGE, ids=[g[0] for g in GARBAGE])
def test_garbage_is_rejected_naming_file_and_field(
    tmp_path: Path, case: str, document: Any, message: str
) -> None:
    with pytest.raises(ProfileError) as caught:
        load_profile(write(tmp_path, document))
    assert message in str(caught.value), case
    assert str(caught.value).startswith(f"{tmp_path / 'profile.json'}: ")


def test_invalid_utf8_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    path.write_bytes(b'{"devices": [{"sn": "\xff"}]}')
    with pytest.raises(ProfileError, match=r"\$: not valid UTF-8 \(byte 21\)"):
        load_profile(path)
    with pytest.raises(ProfileError, match=r"absent\.json: \$: cannot read the file"):
        load_profile(tmp_path / "absent.json")


def test_invalid_utf8_is_reported_the_same_under_every_msgspec(tmp_path: Path) -> None:
    # msgspec 0.23 calls this invalid JSON, older versions raise UnicodeDecodeError: the
    # loader checks UTF-8 itself, so the message (and its offset into the file) is stable.
    for data, offset in ((b'{"devices": [{"sn": 1, "name": "a\xc3"}]}', 33), (b"\xef{}", 0)):
        with pytest.raises(
            ProfileError, match=rf"^p\.json: \$: not valid UTF-8 \(byte {offset}\)$"
        ):
            parse_profile(data, "p.json")


def test_the_mes_simulator_loads_profiles_with_the_same_rules(tmp_path: Path) -> None:
    from hwfleet.sim import mes

    bad_mac = write(tmp_path, {"devices": [device(interfaces=[nic(mac="02:00:00:00:00")])]})
    with pytest.raises(mes.MesProfileError, match=r"interfaces\[0\]\.mac: '02:00:00:00:00' is not"):
        mes.load_profile(bad_mac)
    typo = write(tmp_path, {"devices": [device()], "mes": {"unregisterd": [1001]}})
    with pytest.raises(mes.MesProfileError, match=r"\$\.mes\.unregisterd: unknown field"):
        mes.load_profile(typo)
    good = write(tmp_path, {"devices": [device()], "mes": {"unregistered": [1001]}})
    assert mes.records_from_profile(mes.load_profile(good)) == {"1001": mes.NOT_REGISTERED}


def test_json_error_says_line_and_column() -> None:
    with pytest.raises(ProfileError, match="line 3, column 11"):
        parse_profile('{"devices": [\n  {"sn": 1,\n  "name": x}]}', "p.json")


def test_mac_helpers() -> None:
    assert is_mac("AA-bb-cc-00-11-22") and is_mac("aa:bb:cc:00:11:22")
    # protocol.mac's one rule: a dotted or bare MAC is a MAC in a profile too (it used to be
    # refused here while the scan comparison accepted it).
    assert is_mac("aabb.cc00.1122") and not is_mac("aa:bb:cc:00:11:2g")
    assert normalize_mac("AA-BB-CC-00-11-22") == "aa:bb:cc:00:11:22"


def test_generate_is_deterministic_and_unique() -> None:
    first, again = generate(300, seed=7), generate(300, seed=7)
    assert encode_profile(first) == encode_profile(again)
    serials = [d.sn for d in first.devices]
    assert len(set(serials)) == 300 and all(isinstance(sn, int) for sn in serials)
    macs = [nic.mac for d in first.devices for nic in d.interfaces]
    assert len(set(macs)) == len(macs) >= 300
    assert all(int(mac[:2], 16) & 0b11 == 0b10 for mac in macs)  # locally administered unicast
    uuids = [d.uuid for d in first.devices]
    assert len(set(uuids)) == 300
    assert len({d.name for d in first.devices}) == 300
    # Device i does not depend on how many devices were generated.
    assert encode_profile(generate(5, seed=7)).strip(b"\n ]}") in encode_profile(first)


def test_generate_seeds_differ_and_devices_are_complete() -> None:
    a, b = generate(20, seed=1), generate(20, seed=2)
    assert {d.sn for d in a.devices}.isdisjoint({d.sn for d in b.devices})
    macs_a = {n.mac for d in a.devices for n in d.interfaces}
    assert macs_a.isdisjoint({n.mac for d in b.devices for n in d.interfaces})
    assert {d.uuid for d in a.devices}.isdisjoint({d.uuid for d in b.devices})
    for dev in a.devices:
        nic_functions = {p.address for p in dev.pci if p.class_ == "0x020000"}
        assert {nic.pci for nic in dev.interfaces} == nic_functions  # one NIC function each
        assert dev.memory_mb > 0 and dev.cpus and dev.disks and dev.model_id


def test_generated_profile_round_trips_through_the_loader(tmp_path: Path) -> None:
    profile = generate(50, seed=11)
    path = tmp_path / "generated.json"
    path.write_bytes(encode_profile(profile))
    assert encode_profile(load_profile(path)) == encode_profile(profile)


def test_generate_rejects_bad_counts() -> None:
    for count in (0, -1, 3_000_000):
        with pytest.raises(ValueError, match="count must be"):
            generate(count, seed=0)


def test_device_uuid_prefers_the_profile_and_is_stable() -> None:
    given, plain = parse_profile(
        json.dumps({"devices": [device(uuid="12345678-1234-5678-1234-567812345678"), {"sn": 9}]})
    ).devices
    assert device_uuid(given, 0, 5) == "12345678-1234-5678-1234-567812345678"
    derived = device_uuid(plain, 1, 5)
    assert derived == device_uuid(plain, 1, 5)
    assert len({derived, device_uuid(plain, 2, 5), device_uuid(plain, 1, 6)}) == 3


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_never_escape_as_other_errors(data: bytes) -> None:
    try:
        parse_profile(data, "fuzz.json")
    except ProfileError as exc:
        assert str(exc).startswith("fuzz.json: $")


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda children: st.lists(children) | st.dictionaries(st.text(), children),
        max_leaves=20,
    )
)
def test_arbitrary_json_devices_never_escape(devices: Any) -> None:
    try:
        parse_profile(json.dumps({"devices": devices}), "fuzz.json")
    except ProfileError as exc:
        assert str(exc).startswith("fuzz.json: $")
