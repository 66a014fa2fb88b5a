"""A read-only TFTP server for iPXE (RFC 1350, options per RFC 2347/2348/2349).

Only files under ``root`` are served: the requested name is resolved (symlinks
included) and must stay inside the resolved root, so ``../etc/passwd``, absolute
names and links pointing out are refused with "access violation". Writes are
refused. Each transfer runs on its own UDP socket (the RFC's transfer id), with a
deadline per block and a bounded number of retransmissions; at most
``max_transfers`` run at once. Every transfer ends in ``tftp.success.<nodeid>`` or
``tftp.failure.<nodeid>`` (node ``unknown`` when no lease names the client).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hwfleet.boot import tftp_packets as tp
from hwfleet.bus.topology import word

log = logging.getLogger(__name__)

#: client IP → node id (None: unknown).
Identify = Callable[[str], Awaitable[str | None]]
Emit = Callable[[str, dict[str, Any]], Awaitable[None]]
UNKNOWN_NODE = "unknown"
#: The largest file served (65535 blocks of the default 512 bytes is 32 MiB anyway).
MAX_FILE = 64 * 1024 * 1024


#: The iPXE loaders DHCP names (kea_config): BIOS PXE, UEFI, UEFI with the firmware's driver.
IPXE_LOADERS = ("undionly.kpxe", "ipxe.efi", "snponly.efi")


def prepare_root(ipxe_dir: Path, root: Path) -> list[str]:
    """Copy iPXE's loaders into ``root`` (Debian links some out of /usr/lib/ipxe, and the
    server refuses links that leave its root); returns the names copied."""
    root.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in IPXE_LOADERS:
        source = ipxe_dir / name
        if source.is_file():
            target = root / name
            tmp = root / f".{name}.tmp"
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
            copied.append(name)
    return copied


class TftpRefusedError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def resolve_inside(root: Path, name: str) -> Path:
    """The file ``name`` names under ``root``; TftpRefusedError if outside or missing."""
    if "\\" in name or "\0" in name or not name.strip("/"):
        raise TftpRefusedError(tp.ERR_ACCESS, "access violation")
    base = root.resolve()
    target = (base / name.lstrip("/")).resolve()
    if not target.is_relative_to(base):
        raise TftpRefusedError(tp.ERR_ACCESS, "access violation")
    if not target.is_file():
        raise TftpRefusedError(tp.ERR_NOT_FOUND, "file not found")
    return target


def _read_limited(path: Path) -> bytes:
    # TFTP is for the small iPXE loaders; kernels and initrds go over HTTP (api/boot.py).
    if path.stat().st_size > MAX_FILE:
        raise TftpRefusedError(tp.ERR_UNDEFINED, f"file larger than {MAX_FILE} bytes: use HTTP")
    return path.read_bytes()


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        # Datagrams from any other port are another transfer's; RFC 1350 says ignore them.
        if addr[:2] == self.peer and not self.queue.full():
            self.queue.put_nowait(data)


class TftpServer(asyncio.DatagramProtocol):
    def __init__(
        self,
        root: Path,
        emit: Emit,
        identify: Identify,
        *,
        timeout: float = 2.0,
        retries: int = 5,
        max_transfers: int = 64,
    ) -> None:
        self.root = root
        self._emit = emit
        self._identify = identify
        self._timeout = timeout
        self._retries = retries
        self._slots = asyncio.Semaphore(max_transfers)
        self._transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.address: tuple[str, int] = ("", 0)

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
        self._transport = transport
        self.address = transport.get_extra_info("sockname")[:2]
        log.info("TFTP on %s:%s serving %s", *self.address, self.root)

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        peer = (addr[0], addr[1])
        task = asyncio.create_task(self._handle(data, peer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, data: bytes, peer: tuple[str, int]) -> None:
        if self._slots.locked():
            self._reply_once(peer, tp.error_packet(tp.ERR_UNDEFINED, "server busy, retry"))
            return
        async with self._slots:
            try:
                request = tp.parse_request(data)
            except tp.TftpPacketError as exc:
                self._reply_once(peer, tp.error_packet(tp.ERR_ILLEGAL, str(exc)))
                return
            name = request.filename[:200]
            try:
                if request.opcode == tp.WRQ:
                    raise TftpRefusedError(tp.ERR_ACCESS, "read-only server")
                if request.mode not in ("octet", "netascii"):
                    raise TftpRefusedError(tp.ERR_ILLEGAL, f"mode {request.mode!r} unsupported")
                path = resolve_inside(self.root, request.filename)
                sent = await self._send_file(path, request, peer)
            except TftpRefusedError as exc:
                self._reply_once(peer, tp.error_packet(exc.code, str(exc)))
                await self._report(False, peer, name, str(exc))
            except TimeoutError:
                await self._report(False, peer, name, "client stopped answering")
            except ConnectionError as exc:
                await self._report(False, peer, name, str(exc))
            except OSError as exc:
                log.warning("TFTP %s to %s: %s", name, peer[0], exc)
                await self._report(False, peer, name, f"read error: {exc.strerror or exc}")
            else:
                await self._report(True, peer, name, "", size=sent)

    def _reply_once(self, peer: tuple[str, int], packet: bytes) -> None:
        if self._transport is not None:
            self._transport.sendto(packet, peer)

    async def _send_file(self, path: Path, request: tp.Request, peer: tuple[str, int]) -> int:
        data = await asyncio.to_thread(_read_limited, path)
        size = len(data)
        accepted, blksize, timeout = tp.negotiate(request.options, size)
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in peer[0] else socket.AF_INET
        local = (self.address[0], 0)
        transport, inbox = await loop.create_datagram_endpoint(
            lambda: _Inbox(peer), local_addr=local, family=family
        )
        try:
            wait = timeout or self._timeout
            if accepted:
                await self._exchange(transport, inbox, tp.oack_packet(accepted), 0, wait)
            # Block n carries bytes [(n-1)*blksize, n*blksize); a file that is an exact
            # multiple of blksize ends with an empty block, as RFC 1350 requires.
            for index in range(size // blksize + 1):
                chunk = data[index * blksize : (index + 1) * blksize]
                packet = tp.data_packet(index + 1, chunk)
                await self._exchange(transport, inbox, packet, index + 1, wait)
            return size
        finally:
            transport.close()

    async def _exchange(
        self,
        transport: asyncio.DatagramTransport,
        inbox: _Inbox,
        packet: bytes,
        block: int,
        wait: float,
    ) -> None:
        """Send ``packet`` until its ACK arrives (bounded retransmissions)."""
        for _ in range(self._retries + 1):
            transport.sendto(packet, inbox.peer)
            try:
                async with asyncio.timeout(wait):
                    while True:
                        reply = await inbox.queue.get()
                        if tp.parse_ack(reply) == block & 0xFFFF:
                            return
                        message = tp.parse_error(reply)
                        if message is not None:
                            raise ConnectionError(f"client aborted: {message}")
                        # A duplicate ACK of an earlier block: keep waiting (no Sorcerer's
                        # Apprentice resend, RFC 1123 4.2.3.1).
            except TimeoutError:
                continue
        raise TimeoutError

    async def _report(
        self, ok: bool, peer: tuple[str, int], name: str, reason: str, size: int = 0
    ) -> None:
        try:
            node = await self._identify(peer[0]) or UNKNOWN_NODE
            key = f"tftp.{'success' if ok else 'failure'}.{word(node)}"
            payload: dict[str, Any] = {"nodeId": node, "ip": peer[0], "filename": name}
            if ok:
                payload["size"] = size
            else:
                payload["error"] = reason
            await self._emit(key, payload)
        except Exception:
            log.exception("could not publish a TFTP event")
