"""The rules that keep one device from answering a scan for another (scan/identity.py), the
reference client's reply shape and trigger, and one entry per unit in a document."""

from __future__ import annotations

import msgspec
import pytest

from hwfleet.controller.scan.finish import one_per_serial
from hwfleet.controller.scan.identity import Admitted, Refused, admit, legacy_uuid
from hwfleet.controller.scan.replies import BadReply, Reply, parse_reply
from hwfleet.controller.scan.watch import ScanState
from hwfleet.protocol.inventory import ScanParams
from hwfleet.settings import ServerSettings, SettingsError, load

STATE = ScanState(operationid=7, quiet_timeout=10, expected={"u-a": 1001, "u-b": "SN-B"})
AGENTS = {"1001": "u-a", "sn-b": "u-b", "2002": "u-offline"}


def _admit(uuid: str | None, sn: object, legacy: bool = True) -> object:
    return admit(STATE, uuid, sn, legacy_allowed=legacy, agent_serials=AGENTS)  # type: ignore[arg-type]


def test_an_enrolled_device_answers_with_its_own_serial_only() -> None:
    assert _admit("u-a", 1001) == Admitted("u-a", 1001)
    assert _admit("u-a", "1001") == Admitted("u-a", "1001")  # one unit, either JSON type
    assert _admit("u-b", " sn-b ") == Admitted("u-b", " sn-b ")
    assert _admit("u-a", None) == Admitted("u-a", 1001)  # a bad reply keeps the known serial
    forged = _admit("u-a", "SN-B")
    assert isinstance(forged, Refused) and "enrolled with serial 1001" in forged.reason


def test_a_device_outside_the_expected_set_is_refused() -> None:
    late = _admit("u-late", 3003)
    assert isinstance(late, Refused) and "not expected by scan 7" in late.reason


def test_a_reply_without_identity_is_a_legacy_device_that_cannot_displace_an_enrolled_one() -> None:
    assert _admit(None, "REF-1") == Admitted(legacy_uuid("REF-1"), "REF-1", legacy=True)
    for enrolled in (1001, "SN-B", 2002):  # expected or not, an enrolled serial is taken
        refused = _admit(None, enrolled)
        assert isinstance(refused, Refused) and "enrolled device" in refused.reason
    off = _admit(None, "REF-1", legacy=False)
    assert isinstance(off, Refused) and "--scan-legacy off" in off.reason
    assert _admit(None, None) is None
    assert legacy_uuid("REF-1") == legacy_uuid(" ref-1") != legacy_uuid("REF-2")


def test_one_entry_per_serial() -> None:
    entries = [
        {"macinfo": [], "sn": 1, "result": "1"},
        {"macinfo": [], "sn": 2, "result": "1"},
        {"macinfo": [], "sn": "1", "result": "1"},
    ]
    merged = one_per_serial(entries)
    assert [e["sn"] for e in merged] == [1, 2]
    assert merged[0]["result"] == "0" and "reported by 2 devices" in merged[0]["error"]
    assert one_per_serial(entries[:2]) == entries[:2]


def test_the_reference_reply_shape_is_read() -> None:
    body = (
        b'{"operationid": 4, "sn": 1003, "macinfo": {"enp5s0": {"macaddr": "E0:18:7D:2E:CA:69"}}}'
    )
    reply = parse_reply(body)
    assert isinstance(reply, Reply) and reply.uuid == "" and reply.sn == 1003
    assert [(m.interface, m.key) for m in reply.macs] == [("enp5s0", "e0:18:7d:2e:ca:69")]
    bad = parse_reply(b'{"operationid": 4, "sn": 1003, "macinfo": {"eth0": {"macaddr": "x"}}}')
    assert isinstance(bad, BadReply) and bad.sn == 1003 and "not a MAC" in bad.reason


@pytest.mark.parametrize(("action", "scan"), [(1, True), ("scan", True), (2, False), ("x", False)])
def test_the_trigger_is_action_1_or_scan(action: object, scan: bool) -> None:
    body = msgspec.json.encode({"operationid": 3, "action": action})
    assert msgspec.json.decode(body, type=ScanParams).is_scan() is scan


def test_scan_legacy_takes_on_and_off() -> None:
    assert load(ServerSettings, flags={"scan_legacy": "off"}, env={}).scan_legacy is False
    assert load(ServerSettings, env={"HWFLEET_SCAN_LEGACY": "on"}).scan_legacy is True
    assert load(ServerSettings, env={}).scan_legacy is True
    with pytest.raises(SettingsError, match="scan_legacy"):
        load(ServerSettings, flags={"scan_legacy": "sometimes"}, env={})
