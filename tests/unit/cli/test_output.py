"""What devices say is printed as they said it: no rich markup, no emoji codes."""

from __future__ import annotations

from typing import Any

import pytest

from hwfleet.cli import keys, tasks
from hwfleet.cli.output import print_table

FINGERPRINT = "SHA256:ab:cd:ef:01"  # rich would show :ab: as 🆎 and :cd: as 💿
NAME = "[bold]rack[/] [/]"  # markup, and a closing tag that would make rich raise


def test_a_table_shows_untrusted_text_exactly(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"label": NAME, "key": FINGERPRINT}]
    print_table(
        f"keys of {NAME}", rows, [("label", lambda r: r["label"]), ("key", lambda r: r["key"])]
    )
    out = capsys.readouterr().out
    assert f"keys of {NAME}" in out
    assert f"│ {NAME} │ {FINGERPRINT} │" in out


def key_row(**overrides: Any) -> dict[str, Any]:
    return {
        "id": "ab12",
        "device_uuid": "dev-1",
        "state": "accepted",
        "source": ":cd:",
        "fingerprint": FINGERPRINT,
        **overrides,
    }


def test_keys_list_and_a_key_show_fingerprints_exactly(capsys: pytest.CaptureFixture[str]) -> None:
    keys._table([key_row()])
    out = capsys.readouterr().out
    assert f"│ {FINGERPRINT} │" in out and "│ :cd:   │" in out
    keys._show(key_row(device_uuid=NAME), False, "accepted")
    assert capsys.readouterr().out == (
        f"key ab12 of device {NAME}: accepted\n  fingerprint {FINGERPRINT}\n"
    )


def test_events_print_routing_keys_and_payloads_exactly(
    capsys: pytest.CaptureFixture[str],
) -> None:
    row = {"at": "[red]t", "routing_key": "device.:cd:.online", "payload": {"name": NAME}}
    tasks._print_event(row, False)
    assert capsys.readouterr().out == '[red]t device.:cd:.online {"name": "[bold]rack[/] [/]"}\n'
