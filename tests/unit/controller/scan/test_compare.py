"""The MES compare rules of DESIGN §5 and the seed-000 document shapes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwfleet.controller.scan.compare import build_document, compare, failed_entry, summarize
from hwfleet.integrations.mes_records import (
    MacEntry,
    MesFormatError,
    normalize_mac,
    parse_mes_record,
)


def mes(sn: Any, *rows: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "info": [
            {"serialNo": str(sn), "macInfo": [{"interface": i, "macaddr": m} for i, m in row]}
            for row in rows
        ]
    }


def local(*pairs: tuple[str, str]) -> list[MacEntry]:
    return [MacEntry(interface=i, macaddr=m) for i, m in pairs]


def statuses(entry: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(m["interface"], m["macaddr"], m["scanstatus"]) for m in entry["macinfo"]]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("e0:18:7d:2e:ca:68", "e0:18:7d:2e:ca:68"),
        ("E0:18:7D:2E:CA:68", "e0:18:7d:2e:ca:68"),
        ("e0-18-7d-2e-ca-68", "e0:18:7d:2e:ca:68"),
        (" E0-18-7d-2E-ca-68 ", "e0:18:7d:2e:ca:68"),
        ("e018.7d2e.ca68", "e0:18:7d:2e:ca:68"),
        ("E0187D2ECA68", "e0:18:7d:2e:ca:68"),
    ],
)
def test_normalize_mac_accepts_common_spellings(text: str, expected: str) -> None:
    assert normalize_mac(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "e0:18:7d:2e:ca",
        "e0:18:7d:2e:ca:6g",
        "e0:18-7d:2e:ca:68",
        "not a mac",
        "e0:18:7d:2e:ca:68:00",
        42,
    ],
)
def test_normalize_mac_rejects_garbage_with_reason(text: object) -> None:
    with pytest.raises(ValueError, match="MAC"):
        normalize_mac(text)


def test_seed_example_reproduced_exactly() -> None:
    """The two devices of seed 000's example give the seed's document, byte for byte."""
    rec1001 = parse_mes_record(1001, mes(1001, [("enp4s0", "e0:18:7d:2e:ca:68")]))
    e1 = compare(
        1001,
        local(
            ("enp4s0", "e0:18:7d:2e:ca:68"),
            ("enp6s0", "e0:18:7d:2e:ca:6a"),
            ("enp5s0", "e0:18:7d:2e:ca:69"),
        ),
        rec1001,
    )
    macs = [
        ("enp5s0", "e0:18:7d:2e:ca:69"),
        ("enp2s0f3", "00:18:7d:a4:cc:a6"),
        ("enp8s0", "e0:18:7d:2e:cb:44"),
    ]
    e2 = compare(1003, local(*macs), parse_mes_record(1003, mes(1003, macs)))
    outcome = build_document(1, [e1, e2])
    expected = {
        "operationid": 1,
        "pairInfo": [],
        "scaninfo": [
            {
                "macinfo": [
                    {"interface": "enp4s0", "macaddr": "e0:18:7d:2e:ca:68", "scanstatus": "1"},
                    {"interface": "enp6s0", "macaddr": "e0:18:7d:2e:ca:6a", "scanstatus": "0"},
                    {"interface": "enp5s0", "macaddr": "e0:18:7d:2e:ca:69", "scanstatus": "0"},
                ],
                "sn": 1001,
                "result": "0",
            },
            {
                "macinfo": [
                    {"interface": "enp5s0", "macaddr": "e0:18:7d:2e:ca:69", "scanstatus": "1"},
                    {"interface": "enp2s0f3", "macaddr": "00:18:7d:a4:cc:a6", "scanstatus": "1"},
                    {"interface": "enp8s0", "macaddr": "e0:18:7d:2e:cb:44", "scanstatus": "1"},
                ],
                "sn": 1003,
                "result": "1",
            },
        ],
    }
    assert json.dumps(outcome.document) == json.dumps(expected)
    assert outcome.pair_body() == {"operationid": 1, "snArray": [1003]}
    assert outcome.notification() == {"id": "1", "status": "1 devices passed scanning"}


def test_all_matching_passes() -> None:
    entry = compare(
        7,
        local(("a", "00:00:00:00:00:01")),
        parse_mes_record(7, mes(7, [("a", "00:00:00:00:00:01")])),
    )
    assert entry == {
        "macinfo": [{"interface": "a", "macaddr": "00:00:00:00:00:01", "scanstatus": "1"}],
        "sn": 7,
        "result": "1",
    }


def test_mismatching_mac_fails_and_mes_mac_is_added_as_zero() -> None:
    record = parse_mes_record(7, mes(7, [("eth0", "00:00:00:00:00:02")]))
    entry = compare(7, local(("eth0", "00:00:00:00:00:01")), record)
    assert statuses(entry) == [
        ("eth0", "00:00:00:00:00:01", "0"),
        ("eth0", "00:00:00:00:00:02", "0"),
    ]
    assert entry["result"] == "0"
    assert "error" not in entry


def test_missing_mac_on_device_adds_failed_entry_with_mes_interface() -> None:
    record = parse_mes_record(
        7, mes(7, [("eth0", "00:00:00:00:00:01"), ("eth1", "00:00:00:00:00:02")])
    )
    entry = compare(7, local(("eth0", "00:00:00:00:00:01")), record)
    assert statuses(entry) == [
        ("eth0", "00:00:00:00:00:01", "1"),
        ("eth1", "00:00:00:00:00:02", "0"),
    ]
    assert entry["result"] == "0"


def test_extra_local_mac_fails() -> None:
    record = parse_mes_record(7, mes(7, [("eth0", "00:00:00:00:00:01")]))
    entry = compare(7, local(("eth0", "00:00:00:00:00:01"), ("usb0", "02:00:00:00:00:09")), record)
    assert statuses(entry) == [
        ("eth0", "00:00:00:00:00:01", "1"),
        ("usb0", "02:00:00:00:00:09", "0"),
    ]
    assert entry["result"] == "0"


def test_case_and_dash_differences_still_match_and_keep_each_sides_spelling() -> None:
    record = parse_mes_record(
        "A7", mes("a7", [("eth0", "E0-18-7D-2E-CA-68"), ("eth1", "E0-18-7D-2E-CA-69")])
    )
    entry = compare("A7", local(("eth0", "e0:18:7d:2e:ca:68")), record)
    assert statuses(entry) == [
        ("eth0", "e0:18:7d:2e:ca:68", "1"),
        ("eth1", "E0-18-7D-2E-CA-69", "0"),
    ]


def test_renamed_interface_matches_by_mac_and_reports_device_name() -> None:
    record = parse_mes_record(7, mes(7, [("eth0", "00:00:00:00:00:01")]))
    entry = compare(7, local(("enp4s0", "00:00:00:00:00:01")), record)
    assert statuses(entry) == [("enp4s0", "00:00:00:00:00:01", "1")]
    assert entry["result"] == "1"


def test_unregistered_device_fails_with_reason() -> None:
    record = parse_mes_record(1002, {"info": "Device is not registered"})
    assert not record.registered
    entry = compare(1002, local(("eth0", "00:00:00:00:00:01")), record)
    assert entry["result"] == "0"
    assert entry["error"] == "MES: Device is not registered"
    assert statuses(entry) == [("eth0", "00:00:00:00:00:01", "0")]


def test_empty_info_list_is_no_record() -> None:
    record = parse_mes_record(5, {"info": []})
    assert not record.registered
    assert "no record" in compare(5, local(("a", "00:00:00:00:00:01")), record)["error"]


def test_multiple_rows_are_a_union_not_last_wins() -> None:
    body = mes(
        7,
        [("eth0", "00:00:00:00:00:01")],
        [("eth1", "00:00:00:00:00:02")],
        [("eth1", "00:00:00:00:00:02")],
    )
    record = parse_mes_record(7, body)
    entry = compare(7, local(("eth0", "00:00:00:00:00:01"), ("eth1", "00:00:00:00:00:02")), record)
    assert entry["result"] == "1"
    assert len(entry["macinfo"]) == 2


def test_rows_for_other_serials_are_ignored_when_ours_is_present() -> None:
    body = {
        "info": [
            {"serialNo": "7", "macInfo": [{"interface": "a", "macaddr": "00:00:00:00:00:01"}]},
            {"serialNo": "77", "macInfo": [{"interface": "b", "macaddr": "00:00:00:00:00:77"}]},
        ]
    }
    entry = compare(7, local(("a", "00:00:00:00:00:01")), parse_mes_record(7, body))
    assert entry["result"] == "1"


@pytest.mark.parametrize("sn", [1001, "1001", "SN-XYZ"])
def test_sn_keeps_its_json_type(sn: Any) -> None:
    entry = compare(
        sn,
        local(("a", "00:00:00:00:00:01")),
        parse_mes_record(sn, mes(sn, [("a", "00:00:00:00:00:01")])),
    )
    assert type(entry["sn"]) is type(sn)
    doc = build_document(3, [entry]).document
    assert json.loads(json.dumps(doc))["scaninfo"][0]["sn"] == sn
    assert build_document(3, [entry]).pair_body()["snArray"] == [sn]


def test_numeric_serial_matches_string_serialno() -> None:
    record = parse_mes_record(1001, {"info": [{"serialNo": 1001, "macInfo": []}]})
    assert record.registered


def test_no_macs_anywhere_is_not_a_pass() -> None:
    entry = compare(7, [], parse_mes_record(7, mes(7, [])))
    assert entry["result"] == "0"
    assert "no MAC" in entry["error"]


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("<html>", "not an object"),
        ({"data": []}, "'info'"),
        ({"info": 5}, "not a list"),
        ({"info": [5]}, r"info\[0\]"),
        ({"info": [{"serialNo": "7", "macInfo": "x"}]}, "macInfo"),
        (
            {"info": [{"serialNo": "7", "macInfo": [{"interface": "a", "macaddr": "zz"}]}]},
            "not a MAC",
        ),
    ],
)
def test_garbage_mes_records_raise_clear_errors(body: Any, match: str) -> None:
    with pytest.raises(MesFormatError, match=match):
        parse_mes_record(7, body)


def test_failed_entry_and_notification_with_internal_errors() -> None:
    entry = failed_entry(9, "no reply within the quiet timeout")
    assert entry == {
        "macinfo": [],
        "sn": 9,
        "result": "0",
        "error": "no reply within the quiet timeout",
    }
    outcome = build_document(4, [entry], internal_errors=["MES lookup for sn 9 failed: 404"])
    note = outcome.notification()
    assert note["id"] == "4"
    assert "MES lookup for sn 9 failed: 404" in note["status"]
    assert "0 devices passed scanning" in note["status"]
    assert outcome.pair_body() == {"operationid": 4, "snArray": []}


_macs = st.lists(st.integers(0, 2**48 - 1), max_size=6, unique=True)


@given(device=_macs, registered=_macs, upper=st.booleans())
def test_result_is_one_iff_sets_equal(
    device: list[int], registered: list[int], upper: bool
) -> None:
    def text(n: int, dash: bool) -> str:
        raw = ("-" if dash else ":").join(f"{(n >> s) & 0xFF:02x}" for s in range(40, -8, -8))
        return raw.upper() if dash else raw

    mine = [MacEntry(f"if{i}", text(n, False)) for i, n in enumerate(device)]
    theirs = {
        "info": [
            {
                "serialNo": "1",
                "macInfo": [{"interface": "x", "macaddr": text(n, upper)} for n in registered],
            }
        ]
    }
    entry = compare(1, mine, parse_mes_record(1, theirs))
    assert (entry["result"] == "1") == (bool(device) and set(device) == set(registered))
    assert len(entry["macinfo"]) == len(set(device) | set(registered))


def test_an_outage_hitting_many_devices_reads_as_one_sentence() -> None:
    down = "the MES at http://mes:8080 was unreachable for 300 s (connection refused)"
    errors = [down] * 1000 + ["MES GET http://mes:8080/x: answered HTML", "x" * 5000]
    assert summarize(errors) == f"{down}, for 1000 devices, and 2 other errors"
    assert summarize(["x" * 5000]) == "x" * 199 + "…"
    note = build_document(5, [], internal_errors=[down] * 3).notification()
    assert note["status"] == f"internal error: {down}, for 3 devices (0 devices passed scanning)"
