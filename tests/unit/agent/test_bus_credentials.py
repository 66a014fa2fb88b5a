"""The agent's own bus credentials: a private file, a URL that uses them, no password in reprs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from hwfleet.agent.links.bus_credentials import (
    CREDENTIALS_FILE,
    BusCredentials,
    forget,
    load,
    save,
    wants_own_credentials,
    with_credentials,
)
from hwfleet.trust import AgentIdentity, EnrollParams, EnrollReply

DEVICE = "3f2a0000-0000-4000-8000-000000000001"


def test_credentials_file_is_private_and_round_trips(tmp_path: Path) -> None:
    identity = AgentIdentity.load_or_create(tmp_path, DEVICE)
    assert load(identity) is None
    creds = BusCredentials(f"hwfleet-device-{DEVICE}", "pa/ss:w@rd")
    save(identity, creds)
    path = identity.directory / CREDENTIALS_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load(identity) == creds
    path.write_text("not json")
    assert load(identity) is None
    forget(identity)
    assert not path.exists()


def test_who_asks_for_its_own_user(tmp_path: Path) -> None:
    assert not wants_own_credentials(tmp_path)
    assert wants_own_credentials(tmp_path, password="pw")
    assert wants_own_credentials(tmp_path, token="hwfe_x")
    identity = AgentIdentity.load_or_create(tmp_path, DEVICE)
    save(identity, BusCredentials("u", "p"))
    assert wants_own_credentials(tmp_path)


def test_url_gets_the_devices_user_info() -> None:
    creds = BusCredentials("hwfleet-device-x", "pa/ss:w@rd")
    assert (
        with_credentials("amqp://guest:guest@10.0.0.5:5672/lab?heartbeat=30", creds)
        == "amqp://hwfleet-device-x:pa%2Fss%3Aw%40rd@10.0.0.5:5672/lab?heartbeat=30"
    )
    assert with_credentials("amqps://[::1]/", creds).startswith("amqps://hwfleet-device-x:")
    assert with_credentials("amqps://[::1]/", creds).endswith("@[::1]/")


def test_nothing_prints_a_password() -> None:
    creds = BusCredentials("u", "s3cr3t-value")
    reply = EnrollReply(state="accepted", key_id="k", bus_username="u", bus_password="s3cr3t-value")
    params = EnrollParams(uuid=DEVICE, csr="x", password="s3cr3t-value", transport="amqp")
    for shown in (repr(creds), str(creds), repr(reply), str(reply), repr(params)):
        assert "s3cr3t" not in shown
    assert reply.to_dict()["bus_password"] == "s3cr3t-value"
    assert "bus_username" not in EnrollReply(state="pending", key_id="k").to_dict()
