"""Kea's unix control socket: one JSON command per connection, the reply read to EOF."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

#: Kea's result codes (src/lib/cc/command_interpreter.h).
RESULT_SUCCESS = 0
RESULT_ERROR = 1
RESULT_UNSUPPORTED = 2
RESULT_EMPTY = 3
#: The largest reply read (a full lease table of a big subnet fits easily).
MAX_REPLY = 64 * 1024 * 1024


class KeaError(Exception):
    """Kea answered with an error, or could not be reached."""

    def __init__(self, command: str, text: str, result: int = RESULT_ERROR) -> None:
        super().__init__(f"kea {command}: {text}")
        self.command = command
        self.text = text
        self.result = result


class KeaUnreachableError(KeaError):
    """No Kea listens on the control socket (not started, died, or restarting)."""


class KeaControl:
    """Sends commands to one Kea instance."""

    def __init__(self, socket_path: Path, timeout: float = 10.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        # Kea serves one command at a time; queueing here keeps replies from interleaving.
        self._lock = asyncio.Lock()

    async def command(
        self, command: str, arguments: dict[str, Any] | None = None, *, empty_ok: bool = False
    ) -> dict[str, Any]:
        """The reply's ``arguments`` (``{}`` when none); KeaError on a failure.

        ``empty_ok``: "nothing found" (result 3) is an answer, not an error.
        """
        reply = await self.raw(command, arguments)
        result = reply.get("result", RESULT_ERROR)
        if result == RESULT_SUCCESS or (empty_ok and result == RESULT_EMPTY):
            args = reply.get("arguments")
            return args if isinstance(args, dict) else {}
        raise KeaError(command, str(reply.get("text", "failed")), int(result))

    async def raw(self, command: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        request: dict[str, Any] = {"command": command}
        if arguments is not None:
            request["arguments"] = arguments
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout):
                    data = await self._exchange(json.dumps(request).encode())
            except TimeoutError:
                raise KeaUnreachableError(command, f"no reply within {self.timeout:g} s") from None
            except OSError as exc:
                raise KeaUnreachableError(
                    command, f"control socket {self.socket_path}: {exc.strerror or exc}"
                ) from None
        try:
            reply = json.loads(data)
        except ValueError:
            raise KeaError(command, f"reply is not JSON: {data[:200]!r}") from None
        if isinstance(reply, list):  # Kea answers a list when a command goes through a CA
            reply = reply[0] if reply else {}
        if not isinstance(reply, dict):
            raise KeaError(command, "reply is not a JSON object")
        return reply

    async def _exchange(self, request: bytes) -> bytes:
        reader, writer = await asyncio.open_unix_connection(str(self.socket_path), limit=1 << 20)
        try:
            writer.write(request)
            await writer.drain()
            chunks: list[bytes] = []
            size = 0
            while chunk := await reader.read(1 << 16):
                size += len(chunk)
                if size > MAX_REPLY:
                    raise OSError(f"reply larger than {MAX_REPLY} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            writer.close()

    async def alive(self) -> bool:
        """Whether a Kea answers on the socket."""
        try:
            await self.command("version-get")
        except KeaError:
            return False
        return True
