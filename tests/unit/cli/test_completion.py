"""Completion never fails into the operator's shell: no controller means no suggestions."""

from __future__ import annotations

import socket

import pytest

from hwfleet.cli import completion


def test_no_controller_completes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        monkeypatch.setenv("HWFLEET_API", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("HWFLEET_TOKEN", "x")
        assert completion.targets("rack") == []


def test_method_names_are_the_commands_a_device_answers() -> None:
    names = completion.method_names("")
    assert {"ping", "status", "inventory", "decom.qc", "task_cancel"} <= set(names)
    assert not {"handshake", "task_status", "log"} & set(names)
    assert completion.method_names("device.tr") == [
        "device.trust.add",
        "device.trust.list",
        "device.trust.remove",
    ]
