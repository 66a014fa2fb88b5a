"""The enrollment knock: an enrolling agent asks for an anonymous slot before its TLS handshake.

In an enrollment storm most new devices find every anonymous slot of the
agent port taken (``anonymous_links``). Refused after a TLS handshake, each
refusal cost the controller a full handshake, and those were about half of its
CPU while a thousand devices enrolled (issue 18). So an agent about to enroll
first sends :data:`KNOCK` in plain text on the fresh TCP connection and waits
for one line:

* :data:`GO` — a slot is reserved for this connection: the agent starts TLS
  on it and enrolls exactly as before (the server CA pinned, the password only
  inside TLS);
* ``BUSY <reason>`` — the reason names when to come back (``retry after N s``);
  the controller closes the connection without any TLS.

The knock carries nothing secret and grants nothing but the right to attempt a
TLS handshake as an anonymous link, under the same limits as a link that never
knocked. A forged ``BUSY`` (someone on the path) can only delay an agent, which
such an attacker can do anyway by dropping packets. A TLS ClientHello starts with
byte 0x16, the knock with ``H``: the controller tells the two apart by peeking.
An agent whose controller does not know the knock (it reads EOF or garbage)
connects again with TLS directly.
"""

from __future__ import annotations

#: What an agent sends before TLS on a connection it will enroll on.
KNOCK = b"HWFLEET-ENROLL 1\n"
#: The controller's answer: a slot is reserved, start TLS.
GO = b"GO\n"
#: Prefix of the controller's refusal line; the rest is the reason (with ``retry after N s``).
BUSY = b"BUSY "
#: Longest answer line an agent reads.
MAX_ANSWER = 1024


def busy_line(reason: str) -> bytes:
    """The refusal line for ``reason`` (one line, ASCII, bounded)."""
    text = " ".join(reason.split()).encode("ascii", "replace")
    return BUSY + text[: MAX_ANSWER - len(BUSY) - 1] + b"\n"


class KnockRefusedError(ConnectionError):
    """The controller refused the knock; the message is its reason (``retry after N s``)."""
