"""protocol.mac: one rule for every MAC spelling, including where the three old rules split."""

from __future__ import annotations

import pytest

from hwfleet.protocol.mac import is_mac, normalize_mac

CANONICAL = "e0:18:7d:2e:ca:68"


@pytest.mark.parametrize(
    "text",
    [
        "e0:18:7d:2e:ca:68",
        "E0:18:7D:2E:CA:68",
        "e0-18-7d-2e-ca-68",
        "E0-18-7d-2E-ca-68",
        # The old profile and QC checks refused these; the scan comparison accepted them.
        "e018.7d2e.ca68",
        "E0187D2ECA68",
        " E0-18-7d-2E-ca-68 ",
        "e0:18:7d:2e:ca:68\n",
        # No old rule accepted these; the one rule allows any of : - . between groups.
        "e0.18.7d.2e.ca.68",
        "e018:7d2e:ca68",
        "e018-7d2e-ca68",
    ],
)
def test_every_allowed_spelling_becomes_the_lower_case_colon_form(text: str) -> None:
    assert normalize_mac(text) == CANONICAL
    assert is_mac(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "e0:18:7d:2e:ca",  # five octets
        "e0:18:7d:2e:ca:68:00",  # EUI-64 / too long
        "e0:18:7d:2e:ca:6g",  # not hex
        "e0:18-7d:2e:ca:68",  # two separators
        "e018.7d2e.ca6",  # a digit short
        "e0:187d:2e:ca:68",  # uneven groups
        "e01:87d:2ec:a68",  # groups of three
        "e0 18 7d 2e ca 68",  # blanks are not a separator
        "not a mac",
        # The old profile and QC normalisers passed any text through, lower-cased.
        "GARBAGE",
    ],
)
def test_anything_else_is_a_value_error_naming_the_text(text: str) -> None:
    with pytest.raises(ValueError, match="is not a MAC address") as caught:
        normalize_mac(text)
    assert repr(text) in str(caught.value)
    assert not is_mac(text)


def test_a_non_string_is_refused_by_type() -> None:
    with pytest.raises(ValueError, match="MAC address must be a string, not int"):
        normalize_mac(42)


def test_a_long_wrong_value_is_shortened_in_the_message() -> None:
    with pytest.raises(ValueError) as caught:
        normalize_mac("x" * 1000)
    assert len(str(caught.value)) < 200
