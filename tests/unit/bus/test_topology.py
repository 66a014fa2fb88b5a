"""Topology: names, the prefix rule, routing-key builders and levels (DESIGN §4, seed 003)."""

from __future__ import annotations

import pytest

from hwfleet.bus.topology import (
    EXCHANGES,
    LOG_LEVELS,
    EventKey,
    ExchangeType,
    Topology,
    UnknownNameError,
    level_for,
    log_key,
    method_key,
)


def test_every_design_exchange_with_its_type() -> None:
    expected = {
        "devicescan": ExchangeType.FANOUT,
        "configuration": ExchangeType.TOPIC,
        "events": ExchangeType.TOPIC,
        "http": ExchangeType.TOPIC,
        "dhcp": ExchangeType.TOPIC,
        "tftp": ExchangeType.TOPIC,
        "logging": ExchangeType.TOPIC,
        "task-graph-runner": ExchangeType.TOPIC,
        "scheduler": ExchangeType.TOPIC,
        "task": ExchangeType.TOPIC,
        "progress": ExchangeType.TOPIC,  # the dashboards' live progress (docs/dashboard.md)
        "dead-letter": ExchangeType.FANOUT,
        # The AMQP carrier of the controller↔agent protocol (docs/bus.md).
        "agents": ExchangeType.TOPIC,
        "controllers": ExchangeType.TOPIC,
        "uplink": ExchangeType.TOPIC,
    }
    assert {name: spec.type for name, spec in EXCHANGES.items()} == expected
    # devicescan is non-durable, as seed 000's reference client declares it (DESIGN §4/§5).
    assert {name for name, spec in EXCHANGES.items() if not spec.durable} == {"devicescan"}


def test_prefix_rule_spares_the_seed_000_names() -> None:
    t = Topology()
    assert t.exchange("events") == "hwfleet.events"
    assert t.exchange("task-graph-runner") == "hwfleet.task-graph-runner"
    assert t.exchange("devicescan") == "devicescan"
    assert t.queue("hwinfo_queue") == "hwinfo_queue"
    assert t.queue("agent.replies") == "hwfleet.agent.replies"
    assert t.dead_letter_exchange == t.dead_letter_queue == "hwfleet.dead-letter"
    assert t.rpc_queue("configuration") == "hwfleet.configuration.rpc"
    other = Topology("lab2.")
    assert (
        other.exchange("logging") == "lab2.logging" and other.exchange("devicescan") == "devicescan"
    )
    assert Topology("").exchange("events") == "events"


def test_bad_names_are_refused_with_the_reason() -> None:
    t = Topology()
    with pytest.raises(
        UnknownNameError, match="known: agents, configuration, controllers, dead-letter"
    ):
        t.exchange("event")
    with pytest.raises(UnknownNameError, match="logical name 'events'"):
        t.exchange("hwfleet.events")
    with pytest.raises(ValueError, match="reserved"):
        t.queue("amq.gen-x")
    with pytest.raises(ValueError, match="1 to 200"):
        t.queue("")
    with pytest.raises(ValueError, match="may only hold"):
        Topology("bad prefix/")


def test_rpc_methods_per_exchange() -> None:
    assert EXCHANGES["configuration"].rpc_methods == ("get", "set")
    assert (
        "lookupIpLease" in EXCHANGES["dhcp"].rpc_methods and len(EXCHANGES["dhcp"].rpc_methods) == 9
    )
    assert len(EXCHANGES["task-graph-runner"].rpc_methods) == 11
    assert method_key("get") == "methods.get"
    assert method_key("requestProfile.n1") == "methods.requestProfile.n1"
    with pytest.raises(ValueError):
        method_key("")


def test_event_keys() -> None:
    assert EventKey.task_finished("t1") == "task.finished.t1"
    u = "6f1c2b1e-7c1a-4d8e-9a55-0b6f0c7d1e2f"
    assert EventKey.device_online(u) == f"device.online.{u}"
    assert EventKey.device_offline(u) == f"device.offline.{u}"
    assert EventKey.scan_started(7) == "scan.started.7"
    assert EventKey.scan_device(7, 1001) == "scan.device.7.1001"
    assert EventKey.scan_finished(7) == "scan.finished.7"
    assert EventKey.enrollment("approved", u) == f"enrollment.approved.{u}"


@pytest.mark.parametrize("bad", ["", "a.b", "*", "x#", "n" * 201])
def test_a_word_that_would_reroute_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="routing-key word"):
        EventKey.device_online(bad)


def test_enrollment_state_is_checked() -> None:
    with pytest.raises(ValueError, match="requested, approved"):
        EventKey.enrollment("maybe", "u")


def test_logging_levels() -> None:
    assert LOG_LEVELS == ("emerg", "alert", "error", "warning", "notice", "info", "debug", "silly")
    assert log_key("warn") == "warning" and log_key("silly") == "silly"
    with pytest.raises(ValueError, match="emerg alert error"):
        log_key("verbose")
    assert [level_for(n) for n in (50, 40, 30, 20, 10, 5)] == [
        "alert",
        "error",
        "warning",
        "info",
        "debug",
        "silly",
    ]
