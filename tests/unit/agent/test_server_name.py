"""The server name the agent's stream link gives TLS: none for an address it does not check by
name, so asyncio never loads the idna codec into an idle agent (issue 18)."""

from __future__ import annotations

import ssl
import subprocess
import sys

from hwfleet.agent.links.stream import _server_name


def test_an_address_gets_no_name_a_hostname_keeps_it() -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    assert _server_name("192.0.2.7", context) == ""
    assert _server_name("2001:db8::7", context) == ""
    assert _server_name("controller.example", context) == "controller.example"


def test_a_context_that_checks_names_always_gets_the_host() -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    assert context.check_hostname
    assert _server_name("192.0.2.7", context) == "192.0.2.7"


def test_wrapping_without_a_name_loads_no_idna_codec_and_with_one_does() -> None:
    code = (
        "import ssl, sys\n"
        "c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); c.check_hostname = False\n"
        "c.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname=sys.argv[1] or None)\n"
        "print('encodings.idna' in sys.modules)\n"
    )
    for name, loaded in (("", "False"), ("controller.example", "True")):
        out = subprocess.run(
            [sys.executable, "-c", code, name], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == loaded
