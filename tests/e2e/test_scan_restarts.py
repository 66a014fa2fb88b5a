"""Issue 4: a scan survives its controller being SIGKILLed, and RabbitMQ restarting, mid-scan.

Issue 21 High 4: RabbitMQ restarting as a scan starts loses the triggers waiting in the
devices' exclusive queues; the controller sends them again once its bus is back.

Real processes (see ``scan_rig.py``). "Mid-scan" is made deterministic with the
MES simulator: an injected latency holds every lookup inside the MES, the test
acts once the MES has received all of them (``lookups_received``) — replies
delivered, nothing stored, nothing posted — and then releases them (lowering
the latency lets waiting requests go). Afterwards the scan must complete with
every device's own result, and the MES must hold exactly one deviceScan, one
Pair and one notification, none posted twice (it records a repeated
``Idempotency-Key`` as a duplicate).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from collections.abc import Callable

import pytest

from tests.conftest import service_missing
from tests.e2e.conftest import wait_until
from tests.e2e.scan_rig import DEADLINE, KINDS, ScanRig, check_posts, check_scan

#: Seconds an MES request would wait if the test never released it.
HOLD = 600.0


def _hold_lookups(rig: ScanRig) -> int:
    """Start a scan and return once every device's lookup is held inside the MES."""
    rig.faults(latency=HOLD)
    operationid = rig.start_scan()
    wait_until(lambda: rig.received()["lookups_received"] >= len(KINDS), DEADLINE)
    scan = rig.api(f"/api/v1/scans/{operationid}")
    assert scan["state"] == "running" and scan["answered"] == 0  # truly mid-scan
    assert rig.received()["posts"] == []
    return operationid


def _check_outcome(rig: ScanRig, operationid: int) -> None:
    scan = rig.wait_finished(operationid)
    check_scan(rig, operationid, scan)
    check_posts(rig.fleet, operationid, rig.received(), key_order=rig.key_order)
    outbox = rig.api_list("/api/v1/outbox")
    assert sorted(row["state"] for row in outbox) == ["delivered"] * 3


def _controller_killed_mid_scan(rig: ScanRig) -> None:
    rig.start_mes()
    rig.start_server()
    rig.start_sims()
    operationid = _hold_lookups(rig)

    rig.kill_server()
    rig.faults(latency=0)  # releases the killed controller's lookups into closed sockets
    rig.start_server()  # same data dir, same agent port (stream agents reconnect by themselves)

    _check_outcome(rig, operationid)


def test_controller_killed_mid_scan_stream(scan_rig: Callable[..., ScanRig]) -> None:
    _controller_killed_mid_scan(scan_rig("stream", None, seed=404))


@pytest.mark.rabbit
def test_controller_killed_mid_scan_amqp(amqp_vhost: str, scan_rig: Callable[..., ScanRig]) -> None:
    _controller_killed_mid_scan(scan_rig("amqp", amqp_vhost, seed=405))


@pytest.mark.postgres
def test_controller_killed_mid_scan_postgres(pg_url: str, scan_rig: Callable[..., ScanRig]) -> None:
    rig = scan_rig("stream", None, seed=407, db=pg_url)
    rig.key_order = False  # JSONB reorders keys: see test_scan_key_order_on_postgres
    _controller_killed_mid_scan(rig)


def _restart_broker(while_down: Callable[[], None] = lambda: None) -> None:
    """Stop RabbitMQ's application and start it again (the broker's queues and exclusive
    queues go; durable queues and persistent messages stay), whatever happens meanwhile."""
    try:
        _ctl("stop_app")
        while_down()
    finally:  # never leave the shared broker stopped
        _ctl("start_app")
        _ctl("await_startup", "--timeout", "60")


def _ctl(*args: str) -> None:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        service_missing("rabbitmqctl is not on this machine; cannot restart the broker")
    done = subprocess.run([ctl, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"rabbitmqctl {' '.join(args)}: {done.stderr}{done.stdout}"


@pytest.mark.slow
@pytest.mark.rabbit
def test_rabbitmq_restarted_mid_scan(amqp_vhost: str, scan_rig: Callable[..., ScanRig]) -> None:
    rig = scan_rig("amqp", amqp_vhost, seed=406)
    rig.start_mes()
    server = rig.start_server()
    rig.start_sims()
    operationid = _hold_lookups(rig)  # the replies are delivered and not yet acknowledged

    def release_lookups() -> None:
        # The held lookups are answered while the broker is away: the handlers holding those
        # replies cannot acknowledge them, so the broker must redeliver them once it is back.
        rig.faults(latency=0)
        wait_until(lambda: rig.received()["lookups"] >= len(KINDS), DEADLINE)

    _restart_broker(release_lookups)

    _check_outcome(rig, operationid)

    # Everyone carries on over the restarted broker: the next scan works and posts once too
    # (and, the MES having forgotten the first scan's posts, nothing of it arrives again).
    rig.reset_mes()
    document = json.loads(server.cli("scan", "--json", timeout=120).stdout)
    assert document["operationid"] == operationid + 1
    check_scan(rig, operationid + 1, rig.wait_finished(operationid + 1))
    assert check_posts(rig.fleet, operationid + 1, rig.received()) == document


@pytest.mark.slow
@pytest.mark.rabbit
def test_rabbitmq_restarted_as_a_scan_starts(
    amqp_vhost: str, scan_rig: Callable[..., ScanRig]
) -> None:
    """The trigger is waiting in the devices' queues when the broker restarts, and is lost
    with them (the devices are held with SIGSTOP so none has read it yet). Every device's
    true result must still arrive — the rig's quiet timeout is far beyond the deadline, so
    none can be given up as silent — and be posted once."""
    rig = scan_rig("amqp", amqp_vhost, seed=408)
    rig.start_mes()
    rig.start_server()
    rig.start_sims()
    assert rig.sims is not None
    rig.sims.send_signal(signal.SIGSTOP)
    try:
        operationid = rig.start_scan()
        _restart_broker()
    finally:
        rig.sims.send_signal(signal.SIGCONT)
    _check_outcome(rig, operationid)
