"""First-run enrollment in a child process, so the agent never holds ``cryptography`` (issue 18).

Generating the key, building the CSR and checking the signed certificate load
``cryptography`` and OpenSSL's X.509 code: about 12 MB that an agent which
enrolled in its own process kept for its lifetime. ``hwfleet agent`` therefore
enrolls in a short-lived child (``python -m hwfleet.agent.links.enroll_child``)
that writes the key, certificate and pinned CA to the data dir and exits; the
agent itself then only hands those files to the ``ssl`` module. It idles at
the same RSS whether it enrolled this run or not.

The secret reaches the child on its stdin, never on its command line. A
refusal comes back as the child's error text (a ``busy … retry after N s`` is
honoured by the stream link as usual).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import sys
from pathlib import Path
from typing import Any

from hwfleet.errors import TrustError
from hwfleet.trust.identity import AGENT_CERT, META, PINNED_CA

log = logging.getLogger(__name__)

#: Seconds the child may take at least: key generation, TLS, the controller's answer (15 s).
CHILD_TIMEOUT = 60.0


class ChildEnrollmentError(TrustError):
    """The enrollment child failed; the message is its reason."""


def enrolled_on_disk(data_dir: Path) -> bool:
    pki = data_dir / "pki"
    return all((pki / name).exists() for name in (AGENT_CERT, PINNED_CA, META))


class ChildEnrolledTls:
    """An ``SslProvider`` like :class:`~hwfleet.agent.links.tls.AgentTls`, enrolling in a child."""

    def __init__(
        self,
        data_dir: Path,
        uuid: str,
        host: str,
        port: int,
        *,
        password: str = "",
        token: str = "",
        controller_fingerprint: str = "",
        timeout: float = 15.0,
    ) -> None:
        """``timeout``: seconds for the connection and each answer (the agent's
        ``connect_timeout``); the child as a whole gets four times that, at least a minute."""
        self.data_dir = data_dir
        self._child_timeout = max(CHILD_TIMEOUT, 4 * timeout)
        self.uuid = uuid
        self._request = {
            "data_dir": str(data_dir),
            "uuid": uuid,
            "host": host,
            "port": port,
            "password": password,
            "token": token,
            "fingerprint": controller_fingerprint,
            "timeout": timeout,
            "log_level": logging.getLogger("hwfleet").getEffectiveLevel(),
        }
        self._context: ssl.SSLContext | None = None

    @property
    def key_path(self) -> Path:
        return self.data_dir / "pki" / "agent.key"

    @property
    def is_enrolled(self) -> bool:
        return enrolled_on_disk(self.data_dir)

    async def __call__(self) -> ssl.SSLContext:
        if not self.is_enrolled:
            await self._enroll()
            self._request["token"] = ""  # single use: never sent twice
            self._context = None
        if self._context is None:
            from hwfleet.trust import AgentIdentity, enrolled_context

            # The key and agent.json exist now: loading them needs no cryptography.
            identity = AgentIdentity.load_or_create(self.data_dir, self.uuid)
            self._context = enrolled_context(identity)
        return self._context

    async def _enroll(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            __name__,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(self._child_timeout):
                out, _ = await proc.communicate(json.dumps(self._request).encode())
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise ChildEnrollmentError(
                f"enrollment did not finish within {self._child_timeout:g} s"
            ) from None
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise
        if proc.returncode != 0:
            try:
                reason = str(json.loads(out)["error"])
            except (ValueError, KeyError, TypeError):
                reason = f"the enrollment process exited with status {proc.returncode}"
            raise ChildEnrollmentError(reason)


async def _child(request: dict[str, Any]) -> None:
    from hwfleet.agent.links.enroll import ensure_enrolled
    from hwfleet.trust import AgentIdentity

    identity = AgentIdentity.load_or_create(Path(request["data_dir"]), str(request["uuid"]))
    await ensure_enrolled(
        identity,
        str(request["host"]),
        int(request["port"]),
        password=str(request.get("password") or ""),
        token=str(request.get("token") or ""),
        expected_fingerprint=str(request.get("fingerprint") or "") or None,
        timeout=float(request.get("timeout") or 15.0),
    )


def main() -> int:
    request = json.loads(sys.stdin.read())
    logging.basicConfig(
        level=int(request.get("log_level", logging.WARNING)),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    try:
        asyncio.run(_child(request))
    except Exception as exc:  # every failure goes back to the agent as text
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
