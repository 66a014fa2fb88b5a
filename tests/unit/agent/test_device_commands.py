"""device.rename, device.set_password and device.trust.* on a real simulated AgentRuntime."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from tests.unit.agent.agent_kit import Failed, call, pin_controller, sim_runtime

from hwfleet.agent.discovery import metadata_for
from hwfleet.trust import fingerprints

OTHER = "SHA256:" + ":".join(["ab"] * 32)
BROKEN_CERT = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"


async def test_rename_is_reported_everywhere_and_survives_a_restart(tmp_path: Path) -> None:
    rt = sim_runtime(tmp_path)
    before = rt.info.name
    reply = await call(rt, "device.rename", {"new_name": "  rack-4 slot 7  "})
    assert reply == {"name": "rack-4 slot 7", "old_name": before}
    assert rt.handshake()["name"] == "rack-4 slot 7"
    assert (await call(rt, "status"))["name"] == "rack-4 slot 7"
    assert metadata_for(rt, "127.0.0.1", 1901).name == "rack-4 slot 7"
    # A new process on the same data dir comes back with the new name, not the profile's.
    assert sim_runtime(tmp_path).info.name == "rack-4 slot 7"
    assert sim_runtime(tmp_path / "elsewhere").info.name == before


@pytest.mark.parametrize(
    ("name", "expected"),
    [("   ", "must not be empty"), ("x" * 65, "at most 64"), ("bad\nname", "control characters")],
)
async def test_rename_rejects_bad_names(tmp_path: Path, name: str, expected: str) -> None:
    rt = sim_runtime(tmp_path)
    with pytest.raises(Failed) as failed:
        await call(rt, "device.rename", {"new_name": name})
    assert failed.value.code == "bad_params" and expected in failed.value.msg
    assert not (tmp_path / "device.json").exists()


async def test_rename_uses_the_seed_field_name(tmp_path: Path) -> None:
    with pytest.raises(Failed) as failed:
        await call(sim_runtime(tmp_path), "device.rename", {"name": "x"})
    assert failed.value.code == "bad_params" and "unknown field `name`" in failed.value.msg
    with pytest.raises(Failed) as failed:
        await call(sim_runtime(tmp_path), "device.rename", {})
    assert failed.value.code == "bad_params" and "`new_name`" in failed.value.msg


async def test_password_is_stored_as_a_salted_scrypt_hash_mode_0600(tmp_path: Path) -> None:
    rt = sim_runtime(tmp_path)
    reply = await call(
        rt, "device.set_password", {"old_password": "", "new_password": "first-secret"}
    )
    assert reply["changed"] is True
    path = tmp_path / "admin-password.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "first-secret" not in text
    doc = json.loads(text)
    assert doc["scheme"] == "scrypt" and doc["n"] >= 2**14 and len(doc["salt"]) >= 20
    # Same password again: a fresh salt, so a different hash.
    await call(
        rt, "device.set_password", {"old_password": "first-secret", "new_password": "first-secret"}
    )
    assert json.loads(path.read_text())["hash"] != doc["hash"]


async def test_wrong_old_password_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    rt = sim_runtime(tmp_path)
    await call(rt, "device.set_password", {"new_password": "first-secret"})
    stored = (tmp_path / "admin-password.json").read_bytes()
    for old in ("", "First-secret", "first-secret "):
        with pytest.raises(Failed) as failed:
            await call(
                rt, "device.set_password", {"old_password": old, "new_password": "second-secret"}
            )
        assert failed.value.code == "unauthorized" and "old_password is wrong" in failed.value.msg
        assert "second-secret" not in failed.value.msg
    assert (tmp_path / "admin-password.json").read_bytes() == stored
    # The right one still works, and the new password is the one checked afterwards.
    await call(
        rt, "device.set_password", {"old_password": "first-secret", "new_password": "second-pw!"}
    )
    with pytest.raises(Failed):
        stale = {"old_password": "first-secret", "new_password": "z" * 9}
        await call(rt, "device.set_password", stale)


async def test_a_device_without_password_wants_an_empty_old_one(tmp_path: Path) -> None:
    with pytest.raises(Failed) as failed:
        await call(
            sim_runtime(tmp_path),
            "device.set_password",
            {"old_password": "guess", "new_password": "long-enough"},
        )
    assert failed.value.code == "unauthorized"


async def test_too_short_new_password_is_bad_params(tmp_path: Path) -> None:
    with pytest.raises(Failed) as failed:
        await call(sim_runtime(tmp_path), "device.set_password", {"new_password": "short"})
    assert failed.value.code == "bad_params" and "at least 8" in failed.value.msg


async def test_trust_list_starts_with_the_pinned_controller(tmp_path: Path) -> None:
    ca = pin_controller(tmp_path / "ctl", tmp_path / "dev")
    listed = await call(sim_runtime(tmp_path / "dev"), "device.trust.list")
    assert listed["current"] == ca.fingerprint()
    assert [(e["access_id"], e["current"]) for e in listed["trust"]] == [(ca.fingerprint(), True)]


async def test_trust_add_list_remove_persist(tmp_path: Path) -> None:
    ca = pin_controller(tmp_path / "ctl", tmp_path / "dev")
    rt = sim_runtime(tmp_path / "dev")
    # A bare-hex spelling is normalised to the canonical fingerprint.
    added = await call(rt, "device.trust.add", {"fingerprint": "AB" * 32, "label": "backup ctl"})
    assert added["access_id"] == OTHER and added["added"] is True
    again = await call(rt, "device.trust.add", {"fingerprint": OTHER, "label": "renamed"})
    assert again["added"] is False and again["label"] == "backup ctl"
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    by_pem = await call(rt, "device.trust.add", {"pem": pem, "label": "lab"})
    assert by_pem["access_id"] == fingerprints.of_der(spki)
    # The file is the record: a new runtime reads the same list.
    listed = await call(sim_runtime(tmp_path / "dev"), "device.trust.list")
    ids = [e["access_id"] for e in listed["trust"]]
    assert ids == [ca.fingerprint(), OTHER, by_pem["access_id"]]
    assert stat.S_IMODE((tmp_path / "dev" / "trusted-controllers.json").stat().st_mode) == 0o600
    removed = await call(rt, "device.trust.remove", {"access_id": OTHER})
    assert removed["removed"] is True and removed["access_id"] == OTHER
    listed = await call(rt, "device.trust.list")
    assert [e["access_id"] for e in listed["trust"]] == [ca.fingerprint(), by_pem["access_id"]]


async def test_a_certificate_pem_is_identified_as_enrollment_pins_it(tmp_path: Path) -> None:
    other = pin_controller(tmp_path / "other-ctl", tmp_path / "scratch")
    rt = sim_runtime(tmp_path / "dev")
    added = await call(rt, "device.trust.add", {"pem": other.ca_pem})
    assert added["access_id"] == other.fingerprint()


async def test_removing_the_current_controller_is_refused(tmp_path: Path) -> None:
    ca = pin_controller(tmp_path / "ctl", tmp_path / "dev")
    rt = sim_runtime(tmp_path / "dev")
    with pytest.raises(Failed) as failed:
        await call(rt, "device.trust.remove", {"access_id": ca.fingerprint().upper()})
    assert failed.value.code == "refused"
    assert "controller sending this command" in failed.value.msg
    listed = (await call(rt, "device.trust.list"))["trust"]
    assert ca.fingerprint() in [e["access_id"] for e in listed]


@pytest.mark.parametrize(
    ("params", "code", "expected"),
    [
        ({"fingerprint": "SHA256:12:34"}, "bad_params", "not a SHA-256 fingerprint"),
        ({"pem": BROKEN_CERT}, "bad_params", "pem: not a readable PEM certificate"),
        ({"pem": "hello"}, "bad_params", "expected a PEM"),
        ({}, "bad_params", "exactly one of pem or fingerprint"),
        ({"fingerprint": OTHER, "pem": "x"}, "bad_params", "exactly one"),
        ({"fingerprint": OTHER, "label": "a\x00b"}, "bad_params", "label"),
    ],
)
async def test_trust_add_rejects_garbage(
    tmp_path: Path, params: dict[str, str], code: str, expected: str
) -> None:
    with pytest.raises(Failed) as failed:
        await call(sim_runtime(tmp_path), "device.trust.add", params)
    assert failed.value.code == code and expected in failed.value.msg


async def test_trust_remove_unknown_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(Failed) as failed:
        await call(sim_runtime(tmp_path), "device.trust.remove", {"access_id": OTHER})
    assert failed.value.code == "not_found"


async def test_reset_acl_keeps_only_the_current_controller(tmp_path: Path) -> None:
    ca = pin_controller(tmp_path / "ctl", tmp_path / "dev")
    rt = sim_runtime(tmp_path / "dev")
    await call(rt, "device.trust.add", {"fingerprint": OTHER})
    await call(rt, "device.trust.add", {"fingerprint": "cd" * 32})
    kept = await call(rt, "device.set_password", {"new_password": "pw-one-two", "reset_acl": False})
    assert kept["trust_removed"] == 0
    assert len((await call(rt, "device.trust.list"))["trust"]) == 3
    reset = await call(
        rt,
        "device.set_password",
        {"old_password": "pw-one-two", "new_password": "pw-three-four", "reset_acl": True},
    )
    assert reset["trust_removed"] == 2
    listed = await call(rt, "device.trust.list")
    assert [e["access_id"] for e in listed["trust"]] == [ca.fingerprint()]


async def test_reset_acl_is_the_seed_default(tmp_path: Path) -> None:
    rt = sim_runtime(tmp_path)
    await call(rt, "device.trust.add", {"fingerprint": OTHER})
    reply = await call(rt, "device.set_password", {"new_password": "pw-one-two"})
    assert reply["reset_acl"] is True and reply["trust_removed"] == 1


async def test_without_a_data_dir_changes_live_in_memory(tmp_path: Path) -> None:
    rt = sim_runtime(None)
    await call(rt, "device.rename", {"new_name": "ephemeral"})
    await call(rt, "device.trust.add", {"fingerprint": OTHER})
    assert rt.info.name == "ephemeral"
    assert [e["access_id"] for e in (await call(rt, "device.trust.list"))["trust"]] == [OTHER]
    assert sim_runtime(None).info.name != "ephemeral"
