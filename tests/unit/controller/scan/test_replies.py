"""Scan reply validation: good replies decoded, bad ones refused with their sender named."""

from __future__ import annotations

import msgspec
import pytest

from hwfleet.controller.scan.replies import BadReply, Reply, parse_reply


def body(**fields: object) -> bytes:
    return msgspec.json.encode(fields)


def test_good_reply_keeps_sn_type_and_mac_spelling() -> None:
    reply = parse_reply(
        body(
            operationid=3,
            sn=1001,
            uuid="u1",
            macinfo=[{"interface": "eth0", "macaddr": " E0-18-7D-2E-CA-68 "}],
        )
    )
    assert isinstance(reply, Reply)
    assert reply.sn == 1001 and type(reply.sn) is int
    assert reply.macs[0].macaddr == "E0-18-7D-2E-CA-68"
    assert reply.hwinfo["operationid"] == 3


@pytest.mark.parametrize(
    ("raw", "reason", "ident"),
    [
        (b"{nope", "not JSON", (None, None, None)),
        (body(operationid=3, uuid="u1"), "missing required field `sn`", (3, "u1", None)),
        (body(operationid=3, uuid="u1", sn=True), "malformed", (3, "u1", None)),
        (body(operationid=3, uuid="u1", sn=""), "unusable sn", (3, "u1", None)),
        (
            body(operationid=3, uuid="u1", sn=5, macinfo=[{"interface": "eth0", "macaddr": "xx"}]),
            "macinfo[0] (eth0): 'xx' is not a MAC",
            (3, "u1", 5),
        ),
        (body(operationid="3", uuid="u1", sn=5), "malformed", (None, "u1", 5)),
        (body(sn=5, uuid="u1"), "missing required field `operationid`", (None, "u1", 5)),
    ],
)
def test_bad_replies_name_what_is_wrong_and_who_sent_them(
    raw: bytes, reason: str, ident: tuple[object, object, object]
) -> None:
    bad = parse_reply(raw)
    assert isinstance(bad, BadReply)
    assert reason in bad.reason
    assert (bad.operationid, bad.uuid, bad.sn) == ident


def test_oversized_reply_is_refused_but_attributed() -> None:
    raw = body(operationid=9, uuid="u-big", sn="S1", pad="x" * (5 << 20))
    bad = parse_reply(raw)
    assert isinstance(bad, BadReply)
    assert "exceeds the 1048576-byte limit" in bad.reason
    assert (bad.operationid, bad.uuid, bad.sn) == (9, "u-big", "S1")


def test_size_limit_is_configurable() -> None:
    assert isinstance(parse_reply(body(operationid=1, sn=1), max_bytes=10), BadReply)
