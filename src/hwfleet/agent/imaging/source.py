"""Download images from the controller's image server (mutual TLS, range requests).

Blocking on purpose: reads run in a worker thread next to the disk writes, and
a plain socket ``recv_into`` the consumer's own pooled buffer (:class:`Download`)
is both the fastest and the most memory-frugal way to move a large file: no
per-chunk objects, no copy between the socket and the disk or the hash.
The TLS context is the enrolled agent's (:func:`hwfleet.trust.tls.enrolled_context`):
the pinned controller CA and the device's own certificate.
"""

from __future__ import annotations

import json
import socket
import ssl
from dataclasses import dataclass
from typing import Any

from hwfleet.errors import DeviceError
from hwfleet.images.digest import Digest, expected

CONNECT_TIMEOUT = 15.0
#: A stalled transfer fails after this long without a byte.
READ_TIMEOUT = 60.0
HEAD_LIMIT = 16 * 1024


class ImageSourceError(DeviceError):
    """The image cannot be had (unknown id, refused, connection lost, truncated)."""


class UnknownImageError(ImageSourceError):
    """The controller has no image with this id."""


@dataclass(frozen=True)
class ImageMeta:
    id: str
    name: str
    sha256: str
    size: int
    format: str
    disk_size: int
    #: None from a controller (or a cache entry) older than blake3 digests, or for an
    #: image registered before them: such an image is checked by its sha256.
    blake3: str | None = None

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ImageMeta:
        try:
            blake3 = doc.get("blake3")
            if blake3 is not None and not isinstance(blake3, str):
                raise TypeError(f"blake3 is {blake3!r}, not a hex string")
            return cls(
                **{k: doc[k] for k in ("id", "name", "sha256", "size", "format", "disk_size")},
                blake3=blake3,
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ImageSourceError(f"the image server sent unusable metadata: {exc}") from None

    @property
    def digest(self) -> Digest:
        """What the image's bytes are checked by: blake3 when recorded, else sha256."""
        return expected(self.sha256, self.blake3)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class ImageClient:
    """``host:port`` of the image server, reached with ``context`` (mutual TLS)."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext) -> None:
        self.host, self.port, self.context = host, port, context

    @property
    def where(self) -> str:
        return f"https://{self.host}:{self.port}"

    def _request(
        self, path: str, extra: str = ""
    ) -> tuple[ssl.SSLSocket, int, dict[str, str], bytes]:
        try:
            raw = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT)
        except OSError as exc:
            raise ImageSourceError(f"cannot reach the image server {self.where}: {exc}") from None
        try:
            sock = self.context.wrap_socket(raw, server_hostname=self.host)
            sock.settimeout(READ_TIMEOUT)
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n{extra}Connection: close\r\n\r\n"
            )
            sock.sendall(request.encode("latin-1"))
            head = b""
            while b"\r\n\r\n" not in head:
                data = sock.recv(4096)
                if not data or len(head) > HEAD_LIMIT:
                    raise ImageSourceError(f"the image server {self.where} sent no valid reply")
                head += data
        except (OSError, ssl.SSLError) as exc:
            raw.close()
            raise ImageSourceError(f"image server {self.where}: {exc}") from None
        except BaseException:
            raw.close()
            raise
        head, _, rest = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split(" ")[1])
        except (IndexError, ValueError):
            sock.close()
            raise ImageSourceError(f"the image server {self.where} sent no valid reply") from None
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return sock, status, headers, rest

    def meta(self, image_id: str) -> ImageMeta:
        sock, status, headers, body = self._request(f"/images/{image_id}/meta")
        with sock:
            length = int(headers.get("content-length", "0"))
            while len(body) < length:
                data = sock.recv(length - len(body))
                if not data:
                    break
                body += data
        detail = _detail(body)
        if status == 404:
            raise UnknownImageError(f"unknown image id {image_id!r}: {detail}")
        if status != 200:
            raise ImageSourceError(f"image server refused {image_id!r} ({status}): {detail}")
        try:
            return ImageMeta.from_json(json.loads(body))
        except ValueError:
            raise ImageSourceError("the image server sent unusable metadata") from None

    def open(self, image_id: str, offset: int, size: int) -> Download:
        """Bytes ``offset`` to ``size`` of the image, to ``readinto`` (a Range when resuming)."""
        extra = f"Range: bytes={offset}-\r\n" if offset else ""
        sock, status, _headers, rest = self._request(f"/images/{image_id}", extra)
        expected = 206 if offset else 200
        if status != expected:
            sock.close()
            raise ImageSourceError(f"image server answered {status} for image {image_id!r}")
        return Download(sock, image_id, size - offset, rest)


class Download:
    """One image transfer: ``readinto`` straight from the TLS socket into the caller's buffer.

    Raises :class:`ImageSourceError` when the transfer is cut or ends short.
    """

    def __init__(self, sock: ssl.SSLSocket, image_id: str, remaining: int, head: bytes) -> None:
        self._sock, self._id, self.remaining = sock, image_id, remaining
        self._head = memoryview(head)[:remaining]

    def readinto(self, view: memoryview) -> int:
        if self._head:
            count = min(len(view), len(self._head))
            view[:count] = self._head[:count]
            self._head = self._head[count:]
            self.remaining -= count
            return count
        want = min(len(view), self.remaining)
        # TLS hands over one record (16 KiB) per recv: loop here rather than return each
        # to the caller, a tight loop being about half the Python work per record.
        recv, done = self._sock.recv_into, 0
        try:
            while done < want:
                count = recv(view[done:want])
                if count == 0:
                    raise ImageSourceError(
                        f"download of {self._id} truncated: {self.remaining - done} bytes missing"
                    )
                done += count
        except (OSError, ssl.SSLError) as exc:
            raise ImageSourceError(
                f"download of {self._id} cut off with {self.remaining - done} bytes to go: {exc}"
            ) from None
        finally:
            self.remaining -= done
        return done

    def close(self) -> None:
        self._sock.close()


def _detail(body: bytes) -> str:
    try:
        return str(json.loads(body).get("detail", ""))
    except (ValueError, AttributeError):
        return body[:200].decode("latin-1", "replace")
