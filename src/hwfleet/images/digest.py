"""Image digests: which algorithm checks an image, and hashers for it.

The registry records two digests of every upload, computed in the same streamed pass:
``sha256`` (always; the registry's long-standing output shape) and ``blake3`` (images
added since migration 0012). Agents verify with blake3 when the image's record carries
it and fall back to sha256 for an image registered before: one core hashes blake3 at
about 5.7 GiB/s here (AVX-512) against sha256's 1.6 GiB/s (SHA-NI), and a memory-backed
block device takes 3.5 GB/s, so with sha256 the hash — not the disk — set the pace of
every image write (docs/imaging.md, bench/imaging.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

#: The algorithms an image can be checked with, preferred first.
ALGORITHMS = ("blake3", "sha256")


class Hasher(Protocol):
    """``hashlib``'s and ``blake3``'s common face; both drop the GIL on large buffers."""

    def update(self, data: ReadableBuffer, /) -> object: ...

    def hexdigest(self) -> str: ...


def new_hasher(algorithm: str) -> Hasher:
    """A fresh hasher for ``algorithm`` (one of :data:`ALGORITHMS`)."""
    if algorithm == "blake3":
        # Imported here: an agent that never images does not load the extension.
        import blake3

        # One thread: the writer's other stages need the machine's other cores.
        return blake3.blake3()
    if algorithm == "sha256":
        return hashlib.sha256()
    raise ValueError(f"unknown digest algorithm {algorithm!r} (known: {', '.join(ALGORITHMS)})")


@dataclass(frozen=True)
class Digest:
    """The digest an image's bytes must have: ``algorithm`` and its hex value."""

    algorithm: str
    hexdigest: str

    def hasher(self) -> Hasher:
        return new_hasher(self.algorithm)

    def mismatch(self, what: str, got: str) -> str | None:
        """None when ``got`` is this digest, else the error message naming both digests."""
        if got == self.hexdigest:
            return None
        return (
            f"checksum mismatch ({self.algorithm}): {what} hashes to {got}, "
            f"the registry says {self.hexdigest}"
        )


def expected(sha256: str, blake3: str | None) -> Digest:
    """The digest to check an image by: its blake3 when recorded, else its sha256."""
    if blake3:
        return Digest("blake3", blake3)
    return Digest("sha256", sha256)
