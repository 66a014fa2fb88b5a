"""Fingerprints: one canonical format, lenient parsing, constant-time match, short key ids."""

from __future__ import annotations

import hashlib

import pytest

from hwfleet.trust import fingerprints
from hwfleet.trust.compare import secret_equals


def test_format_is_sha256_prefix_and_colon_hex_pairs() -> None:
    digest = hashlib.sha256(b"x").digest()
    text = fingerprints.format_digest(digest)
    assert text.startswith("SHA256:")
    pairs = text[len("SHA256:") :].split(":")
    assert len(pairs) == 32 and all(len(p) == 2 for p in pairs)
    assert bytes.fromhex("".join(pairs)) == digest


def test_parse_accepts_other_spellings_and_rejects_garbage() -> None:
    canonical = fingerprints.of_der(b"some der")
    bare = canonical[len("SHA256:") :].replace(":", "")
    assert fingerprints.parse(bare.upper()) == canonical
    assert fingerprints.parse(canonical.upper()) == canonical
    assert fingerprints.parse(" " + canonical[len("SHA256:") :] + " ") == canonical
    with pytest.raises(fingerprints.BadFingerprintError, match="not a SHA-256 fingerprint"):
        fingerprints.parse("SHA256:abcd")
    with pytest.raises(fingerprints.BadFingerprintError):
        fingerprints.parse("zz" * 32)


def test_matches_and_key_id() -> None:
    a, b = fingerprints.of_der(b"a"), fingerprints.of_der(b"b")
    assert fingerprints.matches(a, a.upper().replace(":", "").replace("SHA256", "sha256:"))
    assert not fingerprints.matches(a, b)
    assert fingerprints.key_id(a) == a[len("SHA256:") :].replace(":", "")[:16]
    assert len(fingerprints.key_id(a)) == 16


def test_secret_equals() -> None:
    assert secret_equals("s3cret", "s3cret")
    assert not secret_equals("s3cret", "s3cret ")
    assert not secret_equals("", "")  # no configured secret never matches
    assert not secret_equals("anything", "")
    assert secret_equals(b"\xffbytes", b"\xffbytes")
