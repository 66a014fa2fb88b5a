"""``hwfleet discover`` without a controller takes no side when two keys claim one uuid.

Nothing says which key is genuine, so trusting the first packet would let a faster
spoofer be shown as the device and the real one blamed (issue 21 Low 8). Real
responders on 127.1.0.x answer a real ``hwfleet discover`` process; the spoofer is
made to answer first (the real device starts only after it did, and is found by the
browser's retry).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hwfleet.discovery import public_raw
from hwfleet.discovery.signing import fingerprint

from .cli_runner import Claimant, discover_spoofer_first
from .conftest import meta_for

REAL, SPOOFER = "127.1.0.9", "127.1.0.66"


def no_controller(tmp_path: Path) -> dict[str, str]:
    """No operator token anywhere: the command cannot ask a controller."""
    return {"HWFLEET_TOKEN": "", "HWFLEET_DATA_DIR": str(tmp_path / "nothing")}


async def spoofer_then_real(
    port: int, args: list[str], env: dict[str, str], spoofer_key: Ed25519PrivateKey | None
) -> tuple[Any, str | None, str]:
    """Run discover against a spoofer that answers first and the real device; the output
    and both fingerprints (the spoofer's None when it does not sign)."""
    real_key = Ed25519PrivateKey.generate()
    impostor = meta_for(9, address=SPOOFER, name="impostor")
    run = await discover_spoofer_first(
        Claimant(lambda: impostor, SPOOFER, spoofer_key),
        Claimant(lambda: meta_for(9), REAL, real_key),
        port,
        ["--timeout", "3", *args],
        env,
    )
    assert run.returncode == 0, run.err
    spoof_fp = fingerprint(public_raw(spoofer_key)) if spoofer_key is not None else None
    return run, spoof_fp, fingerprint(public_raw(real_key))


@pytest.mark.parametrize("signed_spoof", [True, False], ids=["signed-spoof", "unsigned-spoof"])
async def test_two_keys_for_one_uuid_are_a_conflict_in_json(
    port: int, tmp_path: Path, signed_spoof: bool
) -> None:
    spoofer_key = Ed25519PrivateKey.generate() if signed_spoof else None
    run, spoof_fp, real_fp = await spoofer_then_real(
        port, ["--json"], no_controller(tmp_path), spoofer_key
    )
    docs = msgspec.json.decode(run.out)
    assert [d["uuid"] for d in docs] == [meta_for(9).uuid]  # one record, not two
    doc = docs[0]
    assert doc["conflict"] is True
    # Neither side is chosen: nobody is blamed, no key is shown as the device's.
    assert doc["spoofed"] is False and doc["spoof_source"] is None
    assert doc["fingerprint"] is None and doc["signed"] is False and doc["trusted"] is False
    claims = {c["source"]: c["fingerprint"] for c in doc["claims"]}
    assert claims == {SPOOFER: spoof_fp, REAL: real_fp}
    assert "not checked against enrolled keys" in run.err  # and the operator is told why


async def test_conflict_is_shown_in_the_table(port: int, tmp_path: Path) -> None:
    run, spoof_fp, real_fp = await spoofer_then_real(
        port, [], no_controller(tmp_path), Ed25519PrivateKey.generate()
    )
    assert spoof_fp is not None
    row = next(line for line in run.out.splitlines() if meta_for(9).uuid in line)
    assert "CONFLICT" in row and "SPOOFED" not in row
    assert f"{spoof_fp[:30]}… from {SPOOFER}" in row and f"{real_fp[:30]}… from {REAL}" in row
    assert "not checked against enrolled keys" in run.err
