"""Which digest checks an image (blake3 when recorded, else sha256), and the mismatch words."""

from __future__ import annotations

import hashlib

import pytest

from hwfleet.images.digest import Digest, expected, new_hasher

#: BLAKE3 of the empty input (the reference implementation's test vector).
BLAKE3_EMPTY = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"


def test_blake3_is_chosen_when_recorded_sha256_otherwise() -> None:
    assert expected("aa" * 32, "bb" * 32) == Digest("blake3", "bb" * 32)
    assert expected("aa" * 32, None) == Digest("sha256", "aa" * 32)
    assert expected("aa" * 32, "") == Digest("sha256", "aa" * 32)


def test_hashers_are_the_real_algorithms() -> None:
    assert new_hasher("blake3").hexdigest() == BLAKE3_EMPTY
    data = memoryview(bytes(range(256)) * 5000)
    sha = new_hasher("sha256")
    sha.update(data)
    assert sha.hexdigest() == hashlib.sha256(data).hexdigest()
    with pytest.raises(ValueError, match="unknown digest algorithm 'md5'"):
        new_hasher("md5")


def test_a_mismatch_names_the_algorithm_and_both_digests() -> None:
    digest = Digest("blake3", BLAKE3_EMPTY)
    assert digest.mismatch("image x", BLAKE3_EMPTY) is None
    message = digest.mismatch("image x", "00" * 32)
    assert message == (
        f"checksum mismatch (blake3): image x hashes to {'00' * 32}, the registry says "
        f"{BLAKE3_EMPTY}"
    )
