"""Issue 4: the burn-in scan end to end with real processes (DESIGN §5, §8).

`hwfleet mes-sim`, `hwfleet server` and `hwfleet sim` run as separate processes;
`hwfleet scan --json` drives the scan as an outside script would. The MES
simulator records every post with its ``Idempotency-Key`` (``GET /_received``),
so a post delivered twice shows up as a duplicate. Restarts are in
``test_scan_restarts.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.e2e.scan_rig import KINDS, ScanRig, check_posts, check_scan


def _scan_with_cli(rig: ScanRig) -> None:
    rig.start_mes()
    server = rig.start_server()
    rig.start_sims()

    done = server.cli("scan", "--json", timeout=120)
    document = json.loads(done.stdout)  # exactly one document and nothing else on stdout
    operationid = document["operationid"]

    scan = rig.wait_finished(operationid)
    check_scan(rig, operationid, scan)
    assert scan["document"] == document
    received = rig.received()
    posted = check_posts(rig.fleet, operationid, received)
    assert posted == document  # the MES got exactly what the operator saw
    assert received["lookups"] == len(KINDS)  # one MES lookup per device


def test_scan_over_stream_carrier(scan_rig: Callable[..., ScanRig]) -> None:
    _scan_with_cli(scan_rig("stream", None, seed=401))


@pytest.mark.rabbit
def test_scan_over_amqp_carrier(amqp_vhost: str, scan_rig: Callable[..., ScanRig]) -> None:
    _scan_with_cli(scan_rig("amqp", amqp_vhost, seed=402))


@pytest.mark.postgres
def test_scan_key_order_on_postgres(pg_url: str, scan_rig: Callable[..., ScanRig]) -> None:
    """JSONB would reorder the documents' keys (migration 0002 keeps them as JSON)."""
    _scan_with_cli(scan_rig("stream", None, seed=408, db=pg_url))


def test_mes_down_at_scan_start_delivers_everything_once(
    scan_rig: Callable[..., ScanRig],
) -> None:
    rig = scan_rig("stream", None, seed=403)
    rig.start_mes()
    rig.start_server()
    rig.start_sims()

    rig.faults(down_for=3)  # every request is answered 503 for 3 s
    operationid = rig.start_scan()
    scan = rig.wait_finished(operationid)

    check_scan(rig, operationid, scan)  # the lookups were retried, not failed
    received = rig.received()
    check_posts(rig.fleet, operationid, received)
    assert received["lookups"] == len(KINDS)  # answered once each...
    assert received["lookups_received"] > len(KINDS)  # ...after 503s for the first tries
    outbox = rig.api_list("/api/v1/outbox")
    assert sorted(row["state"] for row in outbox) == ["delivered"] * 3
