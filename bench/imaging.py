"""Re-imaging throughput (DESIGN §12, issue 14): figures printed, goals beside them.

1. Writing a 1 GiB raw image to a loop device with the agent's writer (O_DIRECT, hashing while
   writing: blake3, or sha256 with ``--digest sha256``, the digest of an image registered
   before blake3), as a ratio to ``dd bs=4M oflag=direct`` onto the same device in the same
   run (goal ≥ 90 %); the read-back verification is timed separately.
2. Downloading it into the agent's cache from the controller's mTLS image server, as a ratio
   to ``curl`` with the same client certificate from the same URL (goal ≥ 80 %).
3. The writer process's resident memory while it writes (goal: flat, ≤ 64 MB), its own
   (RssAnon) and the page cache it maps (RssFile: the zero-copy path maps the cached image
   a window at a time) apart.

Rounds alternate the order (odd: dd first, even: the writer first) so neither always runs
on a device the other has just warmed; every round is printed, and the median.

Run as root (loop devices): ``python bench/imaging.py [--size-mib 1024] [--rounds 3]``. The
image goes under /var/tmp; the loop device's backing file under ``--backing-dir`` (default
/dev/shm: a memory-speed device, no shared-disk noise). Each round also times the digest alone
over the same number of bytes in the writer's process: the writer cannot beat it, so on a
machine where one core hashes slower than dd writes it bounds the ratio (it did, with sha256).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.controller.conftest import controller_settings, running_controller
from tests.integration.imaging.enroll import enrolled_identity

MIB = 1024 * 1024

#: Run in a child process (the agent's writer or cache, alone): prints seconds as JSON.
CHILD = r"""
import json, sys, time, threading, asyncio
from pathlib import Path
mode, args = sys.argv[1], json.loads(sys.argv[2])
from hwfleet.agent.hardware.erase import _Progress

def progress(total):
    return _Progress(loop=asyncio.new_event_loop(), total=total, changed=asyncio.Event(),
                     stop=threading.Event(), started=time.monotonic())

import os
flushes = []
_fsync = os.fsync
def fsync(fd):  # timed: the loop device's backing file, or the cache file, written out
    began = time.monotonic()
    _fsync(fd)
    flushes.append(time.monotonic() - began)
os.fsync = fsync

begun = time.monotonic()
if mode == "write":
    from hwfleet.agent.hardware.protect import inspect_target
    from hwfleet.agent.imaging.readers import FileReader
    from hwfleet.agent.imaging import writer
    from hwfleet.agent.imaging.verify import verify_written
    from hwfleet.agent.imaging.writer import write_image
    writer.ZERO_COPY = args["zero_copy"]
    from hwfleet.images.digest import Digest, new_hasher
    target = inspect_target(args["device"])
    begun = time.monotonic()
    expected = Digest(args["algorithm"], args[args["algorithm"]])
    cpu = time.process_time()
    result = write_image(target, FileReader(Path(args["image"])), fmt="raw", expected=expected,
                         disk_size=args["size"], progress=progress(args["size"]), verify=False)
    wrote = time.monotonic() - begun
    cpu = time.process_time() - cpu
    fd = os.open(args["device"], os.O_RDONLY | os.O_DIRECT)
    written = Digest(result.algorithm, result.digest)
    verify_written(fd, target, result.bytes_written, written, progress(args["size"]))
    verified = time.monotonic() - begun - wrote
    import mmap
    block, hasher = mmap.mmap(-1, 2 << 20), new_hasher(args["algorithm"])
    began = time.monotonic()
    for _ in range(args["size"] // len(block)):
        hasher.update(block)
    print(json.dumps({"write": wrote, "cpu": cpu, "fsync": sum(flushes), "verify": verified,
                      "hash": time.monotonic() - began}))
else:
    from hwfleet.agent.imaging.cache import ImageCache
    from hwfleet.agent.imaging.source import ImageClient
    from hwfleet.trust.identity import AgentIdentity
    from hwfleet.trust.tls import enrolled_context
    identity = AgentIdentity.load_or_create(args["data_dir"], args["uuid"])
    begun = time.monotonic()
    client = ImageClient("127.0.0.1", args["port"], enrolled_context(identity))
    meta = client.meta(args["id"])
    ImageCache(Path(args["cache"])).fetch(client, meta, progress(meta.size))
    print(json.dumps({"download": time.monotonic() - begun, "fsync": sum(flushes)}))
"""


def make_image(path: Path, size: int) -> dict[str, str]:
    """Random bytes (nothing for a loop device or a cache to shortcut); their digests."""
    from hwfleet.images.digest import ALGORITHMS, new_hasher

    block = os.urandom(64 * MIB)
    hashers = {algorithm: new_hasher(algorithm) for algorithm in ALGORITHMS}
    with path.open("wb") as handle:
        for _ in range(size // len(block)):
            handle.write(block)
            for hasher in hashers.values():
                hasher.update(block)
    return {algorithm: hasher.hexdigest() for algorithm, hasher in hashers.items()}


RSS_FIELDS = ("VmRSS", "RssAnon", "RssFile")


def rss_sampler(pid: int, peaks: list[dict[str, int]], stop: asyncio.Event) -> asyncio.Task[None]:
    async def sample() -> None:
        while not stop.is_set():
            try:
                status = Path(f"/proc/{pid}/status").read_text().splitlines()
            except OSError:
                return
            fields = dict(line.split(":", 1) for line in status if ":" in line)
            if all(name in fields for name in RSS_FIELDS):
                peaks.append({name: int(fields[name].split()[0]) * 1024 for name in RSS_FIELDS})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)

    return asyncio.create_task(sample())


async def child(
    mode: str, args: dict[str, object], peaks: list[dict[str, int]] | None = None
) -> dict[str, float]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, mode, json.dumps(args), stdout=subprocess.PIPE
    )
    stop = asyncio.Event()
    sampler = rss_sampler(proc.pid, peaks, stop) if peaks is not None else None
    out, _ = await proc.communicate()
    stop.set()
    if sampler is not None:
        await sampler
    if proc.returncode != 0:
        raise SystemExit(f"{mode} child failed ({proc.returncode})")
    result: dict[str, float] = json.loads(out)
    return result


def children_cpu() -> float:
    """CPU seconds of the waited-for children so far (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def timed(*command: str, cpu: list[float] | None = None) -> float:
    """Wall seconds of ``command``; its CPU seconds appended to ``cpu`` when given."""
    began_cpu = children_cpu()
    begun = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{command[0]} failed: {err.decode()[:300]}")
    wall = time.monotonic() - begun
    if cpu is not None:
        cpu.append(children_cpu() - began_cpu)
    return wall


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


async def main(
    size: int, download: bool, rounds_count: int, backing_dir: str, algorithm: str, copy: bool
) -> None:
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="hwfleet-bench-") as tmp:
        work = Path(tmp)
        image = work / "image.raw"
        digests = await asyncio.to_thread(make_image, image, size)
        # The device's backing file in memory by default: the fastest device (the hardest
        # comparison for the writer, whose sha256 costs CPU) and no shared-disk noise.
        backing = Path(tempfile.mkdtemp(dir=backing_dir, prefix="hwfleet-bench-")) / "loop.img"
        with backing.open("wb") as handle:
            # Allocated up front: the first writer would otherwise pay for the file's blocks.
            os.posix_fallocate(handle.fileno(), 0, size + MIB)
        device = subprocess.run(
            ["losetup", "-f", "--show", str(backing)], capture_output=True, text=True, check=True
        ).stdout.strip()
        try:
            gib = size / 1e6
            dd_args = ("dd", f"if={image}", f"of={device}", "bs=4M", "oflag=direct")
            args: dict[str, object] = {
                "device": device,
                "image": str(image),
                "size": size,
                "algorithm": algorithm,
                "zero_copy": True,
            }
            args.update(digests)
            peaks: list[dict[str, int]] = []
            rounds, dd_cpu, copied = [], [], []
            for number in range(rounds_count):  # alternated: the machine is shared
                if number % 2:
                    ours = await child("write", args, peaks)
                if copy:  # the read-copy path (a compressed image or a download), compared
                    copied.append(await child("write", {**args, "zero_copy": False}))
                dd = await timed(*dd_args, cpu=dd_cpu)
                dd_sync = await timed(*dd_args, "conv=fsync")
                if not number % 2:
                    ours = await child("write", args, peaks)
                rounds.append((dd, dd_sync, ours))
        finally:
            subprocess.run(["losetup", "-d", device], check=False)
            backing.unlink()
            backing.parent.rmdir()
        print(f"image {size // MIB} MiB onto {device} (loop device over {backing})")
        header = "dd  dd+fsync  hwfleet (fsync s)"
        print(f"  round   {header}  {algorithm} alone   ratio/dd  ratio/dd+fsync")
        for number, (dd, dd_sync, ours) in enumerate(rounds, 1):
            write, flush, alone = ours["write"], ours["fsync"], ours["hash"]
            first = "dd first" if number % 2 else "hwfleet first"
            print(
                f"  {number} {gib / dd:7.1f} {gib / dd_sync:7.1f} {gib / write:9.1f} ({flush:.2f})"
                f"  {gib / alone:10.1f}   {dd / write * 100:7.1f} %  {dd_sync / write * 100:7.1f} %"
                f"  ({first})"
            )
        ratios = [dd / ours["write"] * 100 for dd, _, ours in rounds]
        print(
            f"  median: dd {gib / median([dd for dd, _, _ in rounds]):.1f}, hwfleet "
            f"{gib / median([ours['write'] for _, _, ours in rounds]):.1f} MB/s; ratio/dd "
            f"median {median(ratios):.1f} % (min {min(ratios):.1f}, max {max(ratios):.1f}) "
            f"over all {len(rounds)} rounds"
        )
        if copied:
            copy_ratios = [
                dd / c["write"] * 100 for (dd, _, _), c in zip(rounds, copied, strict=True)
            ]
            print(
                "  read-copy path (zero copy off), same rounds: ratio/dd "
                + " / ".join(f"{r:.1f}" for r in copy_ratios)
                + f" %, median {median(copy_ratios):.1f} %"
            )
        print("  (MB/s; goal >= 90 %. The writer fsyncs at the end; dd+fsync is dd with the")
        print("   same guarantee, which matters when the backing file is on a disk.)")
        # CPU time is what a loaded machine cannot blur much (the loop device's kernel worker,
        # which copies each write into its backing file, is in neither figure).
        ours_cpu = " / ".join(f"{ours['cpu'] * 2**30 / size:.3f}" for _, _, ours in rounds)
        print(
            f"  CPU s/GiB: dd {' / '.join(f'{c * 2**30 / size:.3f}' for c in dd_cpu)}, "
            f"hwfleet {ours_cpu}"
        )
        verify = min(ours["verify"] for _, _, ours in rounds)
        print(f"  read-back verify      : {gib / verify:8.1f} MB/s ({verify:.2f} s, extra)")
        for name in RSS_FIELDS:
            low = min(peak[name] for peak in peaks) / MIB
            high = max(peak[name] for peak in peaks) / MIB
            print(f"  writer {name:<15}: {low:.1f} to {high:.1f} MiB, {len(peaks)} samples")
        print("  (<= 64 MB; RssFile is the cached image's page cache, mapped while written)")

        if not download:
            return
        settings = controller_settings(work / "controller", image_listen="127.0.0.1:0")
        async with running_controller(settings) as ctl:
            identity = await enrolled_identity(ctl, work / "device")
            from hwfleet.images.registry import ImageRegistry  # noqa: F401

            async def chunks():  # type: ignore[no-untyped-def]
                with image.open("rb") as handle:
                    while block := handle.read(4 * MIB):
                        yield block

            record = await ctl.images.add(chunks(), "bench")
            assert ctl.image_server is not None
            port = ctl.image_server.port
            url = f"https://127.0.0.1:{port}/images/{record.id}"
            curl = [
                "curl",
                "-sS",
                "--fail",
                "-k",
                "--cert",
                str(identity.cert_path),
                "--key",
                str(identity.key_path),
                "-o",
                str(work / "curl.out"),
                url,
            ]
            times_curl, times_sync, times_ours, flushes = [], [], [], []
            for round_ in range(rounds_count):
                times_curl.append(await timed(*curl))
                # curl leaves its file in the page cache; the cache fsyncs before it trusts
                # an entry. `sync FILE` (an fsync) gives curl the same guarantee.
                times_sync.append(times_curl[-1] + await timed("sync", str(work / "curl.out")))
                (work / "curl.out").unlink()
                cache = work / f"cache{round_}"
                ours_dl = await child(
                    "download",
                    {
                        "data_dir": str(identity.directory.parent),
                        "uuid": identity.uuid,
                        "port": port,
                        "id": record.id,
                        "cache": str(cache),
                    },
                )
                times_ours.append(ours_dl["download"])
                flushes.append(ours_dl["fsync"])
                subprocess.run(["rm", "-rf", str(cache)], check=False)
        print("download into the cache (mTLS, loopback), alternated")
        check = "blake3"  # what the agent checks an image added now by
        print(f"  round   curl  curl+sync  hwfleet ({check}; fsync s)  ratio/curl  ratio/curl+sync")
        for number, (c, cs, o, f) in enumerate(
            zip(times_curl, times_sync, times_ours, flushes, strict=True), 1
        ):
            print(
                f"  {number} {gib / c:9.1f} {gib / cs:9.1f} {gib / o:12.1f} ({f:.2f})"
                f"  {c / o * 100:13.1f} %  {cs / o * 100:12.1f} %"
            )
        print("  (MB/s; goal >= 80 % of curl. hwfleet's time includes its fsync)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--no-download", action="store_true", help="only the write figures")
    parser.add_argument("--rounds", type=int, default=3, help="alternated measurements")
    parser.add_argument(
        "--backing-dir",
        default="/dev/shm",  # noqa: S108 - the loop device's backing file, removed after
        help="where the loop device's file lives",
    )
    parser.add_argument(
        "--digest",
        choices=("blake3", "sha256"),
        default="blake3",
        help="the writer's digest (sha256: an image registered before blake3 was recorded)",
    )
    parser.add_argument(
        "--compare-copy",
        action="store_true",
        help="also time the read-copy path (a compressed image's) against the same dd rounds",
    )
    options = parser.parse_args()
    asyncio.run(
        main(
            options.size_mib * MIB,
            not options.no_download,
            options.rounds,
            options.backing_dir,
            options.digest,
            options.compare_copy,
        )
    )
