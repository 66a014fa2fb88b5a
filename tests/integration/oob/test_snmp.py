"""The SNMP driver against snmpsim on a loopback UDP port."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.oob_support.snmp_agent import V3_USER, SnmpAgent, snmp_agent

from hwfleet.oob.driver import BmcAddress, BmcError
from hwfleet.oob.service import OobService

NODE = "node-snmp"


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[SnmpAgent]:
    with snmp_agent(tmp_path / "snmp") as running:
        yield running


def address(agent: SnmpAgent, community: str | None = None) -> BmcAddress:
    return BmcAddress(
        driver="snmp",
        address=agent.host,
        port=agent.port,
        password=agent.community if community is None else community,
    )


async def test_sensors_status_and_oids(oob: OobService, agent: SnmpAgent) -> None:
    await oob.set_bmc(NODE, address(agent))
    sensors = await oob.sensors(NODE)
    assert [(s["name"], s["kind"], s["value"]) for s in sensors] == [
        ("CPU Temp", "temperature", 44.0),
        ("Fan 1", "fan", 5200.0),
    ]
    assert await oob.power(NODE, "status") == "on"
    values = await oob.run(NODE, lambda d: d.get_oids(["1.3.6.1.2.1.1.1.0"]))  # type: ignore[attr-defined]
    assert values == {"1.3.6.1.2.1.1.1.0": "hwfleet test PDU"}
    with pytest.raises(BmcError, match="unsupported"):
        await oob.power(NODE, "off")


async def test_wrong_community_and_dead_agent_time_out(oob: OobService, agent: SnmpAgent) -> None:
    await oob.set_bmc(NODE, address(agent, "not-the-community"))
    with pytest.raises(BmcError) as err:
        await oob.sensors(NODE)
    assert err.value.kind == "timeout" and "not-the-community" not in str(err.value)


@pytest.fixture
def agent_v3(tmp_path: Path) -> Iterator[SnmpAgent]:
    with snmp_agent(tmp_path / "snmp3", v3=True) as running:
        yield running


def v3_address(agent: SnmpAgent, **changes: str) -> BmcAddress:
    user, auth, priv = V3_USER
    fields = {"username": user, "password": auth, "priv_password": priv, **changes}
    return BmcAddress(driver="snmp", address=agent.host, port=agent.port, **fields)


async def test_v3_auth_priv_reads_sensors(oob: OobService, agent_v3: SnmpAgent) -> None:
    shown = await oob.set_bmc(NODE, v3_address(agent_v3, auth_protocol="sha", priv_protocol="aes"))
    assert shown["snmp"] == "v3 authPriv sha/aes"
    assert not set(V3_USER) & {str(v) for v in shown.values()}  # no user, no passphrase
    sensors = await oob.sensors(NODE)
    assert [(s["name"], s["kind"], s["value"]) for s in sensors] == [
        ("CPU Temp", "temperature", 44.0),
        ("Fan 1", "fan", 5200.0),
    ]
    assert await oob.power(NODE, "status") == "on"


@pytest.mark.parametrize(
    "changes",
    [
        {"password": "wrong-auth-pass"},
        {"priv_password": "wrong-priv-pass"},
        {"username": "nobody-here"},
    ],
    ids=["auth passphrase", "privacy passphrase", "user"],
)
async def test_v3_wrong_credentials_fail_clearly_and_never_leak(
    oob: OobService, agent_v3: SnmpAgent, changes: dict[str, str]
) -> None:
    await oob.set_bmc(NODE, v3_address(agent_v3, **changes))
    with pytest.raises(BmcError) as err:
        await oob.sensors(NODE)
    assert err.value.kind in ("auth", "timeout"), err.value
    text = str(err.value) + str((await oob.describe(NODE))["last_error"])
    for secret in [*V3_USER, *changes.values()]:
        assert secret not in text


async def test_v3_weak_settings_are_refused(oob: OobService, agent_v3: SnmpAgent) -> None:
    for changes, words in [
        ({"auth_protocol": "md5"}, "auth protocol must be one of sha"),
        ({"priv_protocol": "des"}, "privacy protocol must be one of aes"),
        ({"priv_password": ""}, "at least 8 characters"),
        ({"password": "short"}, "at least 8 characters"),
    ]:
        with pytest.raises(BmcError, match=words) as err:
            await oob.set_bmc(NODE, v3_address(agent_v3, **changes))
        assert err.value.kind == "bad_input"
    with pytest.raises(BmcError, match="need the v3 user"):
        await oob.set_bmc(
            NODE, BmcAddress(driver="snmp", address=agent_v3.host, priv_password="x" * 9)
        )


async def test_cli_sets_an_snmp_v3_bmc(tmp_path: Path, agent_v3: SnmpAgent) -> None:
    """``hwfleet bmc set --snmp HOST --snmp-v3-user U``: passphrases from a file and the
    environment (never arguments), stored sealed, never shown, and the sensors read."""
    from hwfleet.controller.app import Controller

    from .test_controller_oob import cli, controller_settings

    user, auth, priv = V3_USER
    secret = tmp_path / "auth-pass"
    secret.write_text(auth + "\n")
    # SNMPv3 runs engine discovery and key localisation per call, in threads beside the
    # node's pollers: give it the default timeout rather than the other tests' short one.
    ctl = Controller(controller_settings(tmp_path, bmc_timeout=10.0))
    await ctl.start()
    try:
        node = "00000000-0000-0000-0000-00000000000a"
        code, out, err = await cli(
            ctl,
            "bmc", "set", node, "--snmp", agent_v3.host, "--port", str(agent_v3.port),
            "--snmp-v3-user", user, "--snmp-auth", "SHA", "--snmp-priv", "AES",
            "--password-file", str(secret), "--json",
            env={"HWFLEET_BMC_PRIV_PASSWORD": priv},
        )  # fmt: skip
        assert code == 0, err
        assert json.loads(out)["snmp"] == "v3 authPriv sha/aes"
        code, out, err = await cli(ctl, "sensors", node, "--json")
        assert code == 0, err
        assert {s["name"] for s in json.loads(out)} == {"CPU Temp", "Fan 1"}
        code, out, err = await cli(ctl, "bmc", "show", node, "--json")
        everything = out + err
        assert code == 0 and auth not in everything and priv not in everything
        assert user not in everything
        # A privacy setting without a v3 user is a usage mistake, said before anything is sent.
        code, out, err = await cli(
            ctl, "bmc", "set", node, "--snmp", agent_v3.host, "--snmp-priv", "aes"
        )
        assert code != 0 and "--snmp-v3-user" in err
    finally:
        await ctl.close()
