"""The agent identity: private key on disk, CSR, certificate checks, no cryptography when idle."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from hwfleet.trust import AgentIdentity, CertificateAuthority, IdentityError
from hwfleet.trust.csr import parse_csr


def enrolled(tmp_path: Path, ca: CertificateAuthority, name: str = "agent") -> AgentIdentity:
    device = str(uuid.uuid4())
    identity = AgentIdentity.load_or_create(tmp_path / name, device)
    identity.save_certificate(ca.sign_csr(identity.csr_pem(), device), ca.ca_pem)
    return identity


def test_key_is_private_ed25519_and_stable(tmp_path: Path) -> None:
    device = str(uuid.uuid4())
    identity = AgentIdentity.load_or_create(tmp_path, device)
    assert stat.S_IMODE(identity.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(identity.directory.stat().st_mode) == 0o700
    assert not identity.is_enrolled
    info = parse_csr(identity.csr_pem())
    assert info.key_type == "Ed25519"
    assert info.fingerprint == identity.fingerprint
    again = AgentIdentity.load_or_create(tmp_path, device)
    assert again.fingerprint == identity.fingerprint


def test_p256_keys_and_unknown_types(tmp_path: Path) -> None:
    identity = AgentIdentity.load_or_create(tmp_path / "a", str(uuid.uuid4()), key_type="p256")
    assert parse_csr(identity.csr_pem()).key_type == "ECDSA-secp256r1"
    with pytest.raises(ValueError, match="not one of"):
        AgentIdentity.load_or_create(tmp_path / "b", str(uuid.uuid4()), key_type="dsa")


def test_another_uuid_in_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    AgentIdentity.load_or_create(tmp_path, str(uuid.uuid4()))
    with pytest.raises(IdentityError, match="own --data-dir"):
        AgentIdentity.load_or_create(tmp_path, str(uuid.uuid4()))


def test_lost_metadata_is_rebuilt_from_the_key(tmp_path: Path) -> None:
    device = str(uuid.uuid4())
    identity = AgentIdentity.load_or_create(tmp_path, device)
    (identity.directory / "agent.json").write_text("{not json")
    assert AgentIdentity.load_or_create(tmp_path, device).fingerprint == identity.fingerprint


def test_save_certificate_pins_the_ca(tmp_path: Path, ca: CertificateAuthority) -> None:
    identity = enrolled(tmp_path, ca)
    assert identity.is_enrolled
    assert identity.pinned_ca_fingerprint == ca.fingerprint()
    for path in (identity.cert_path, identity.ca_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    described = identity.describe()
    assert described["enrolled"] and described["controller_ca_fingerprint"] == ca.fingerprint()
    identity.forget_certificate()
    assert not identity.is_enrolled
    assert identity.pinned_ca_fingerprint == ca.fingerprint(), "the pin survives"


def test_save_certificate_refuses_what_does_not_belong(
    tmp_path: Path, ca: CertificateAuthority, keys: Any
) -> None:
    device = str(uuid.uuid4())
    identity = AgentIdentity.load_or_create(tmp_path / "me", device)
    other_ca = CertificateAuthority.load_or_create(tmp_path / "other-ca")
    # Someone else's key, signed for my uuid.
    foreign = ca.sign_csr(keys.csr_for(keys.make_key("p256")), device)
    with pytest.raises(IdentityError, match="another key"):
        identity.save_certificate(foreign, ca.ca_pem)
    # My key, but naming another device.
    with pytest.raises(IdentityError, match="does not name device"):
        identity.save_certificate(ca.sign_csr(identity.csr_pem(), str(uuid.uuid4())), ca.ca_pem)
    # My key and uuid, but the CA sent with it is not the issuer.
    mine = ca.sign_csr(identity.csr_pem(), device)
    with pytest.raises(IdentityError, match="not issued by the CA"):
        identity.save_certificate(mine, other_ca.ca_pem)
    with pytest.raises(IdentityError, match="unreadable"):
        identity.save_certificate("garbage", ca.ca_pem)
    assert not identity.is_enrolled, "nothing was written"
    identity.save_certificate(mine, ca.ca_pem)
    assert x509.load_pem_x509_certificate(identity.cert_path.read_bytes())


def test_enrolled_idle_agent_never_imports_cryptography(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    identity = enrolled(tmp_path, ca)
    script = (
        "import sys, json\n"
        "from hwfleet.trust import AgentIdentity, enrolled_context\n"
        f"i = AgentIdentity.load_or_create({str(tmp_path / 'agent')!r}, {identity.uuid!r})\n"
        "ctx = enrolled_context(i)\n"
        "print(json.dumps({'enrolled': i.is_enrolled, 'fp': i.fingerprint,\n"
        "  'pin': i.pinned_ca_fingerprint,\n"
        "  'crypto': sorted(m for m in sys.modules if m.startswith('cryptography'))}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    report = json.loads(out.stdout)
    assert report == {
        "enrolled": True,
        "fp": identity.fingerprint,
        "pin": ca.fingerprint(),
        "crypto": [],
    }
