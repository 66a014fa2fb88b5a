"""``hwfleet boot build-discovery``: a kernel and initramfs that run the hwfleet agent.

Everything comes from Debian packages: the kernel from ``linux-image-<version>-amd64``
(fetched with ``apt-get download`` and unpacked, never installed), busybox and
python3.11 from this machine's Debian packages (with the shared libraries ``ldd``
names), and hwfleet with its runtime dependencies from the running environment. The
result is ``<out>/vmlinuz`` and ``<out>/initrd.img`` (gzip newc cpio), which the
``discovery`` boot profile serves from ``/boot/files/discovery/``.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from hwfleet.boot.discovery_init import INIT, MODULES, UDHCPC

PYTHON = Path("/usr/bin/python3.11")
STDLIB = Path("/usr/lib/python3.11")
BUSYBOX = Path("/usr/bin/busybox")
#: Parts of the standard library an agent never imports (a third of its size).
_STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data"}
_REQ_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_LDD_PATH = re.compile(r"(/\S+\.so[\S]*)")


class BuildError(RuntimeError):
    """A step of the build failed; the message says which and how to fix it."""


def _run(*argv: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise BuildError(f"{argv[0]} is not installed") from None
    if done.returncode != 0:
        raise BuildError(f"{' '.join(argv[:3])}… failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def fetch_kernel(package: str, work: Path) -> tuple[Path, Path]:
    """(vmlinuz, modules dir) from the Debian kernel package, downloaded and unpacked.

    A ``linux-image-*.deb`` already in ``work`` is used as it is (a cached download).
    """
    if not any(work.glob(f"{package}_*.deb")):
        _run("apt-get", "download", package, cwd=work)
    debs = sorted(work.glob("linux-image-*.deb"))
    if not debs:
        raise BuildError(f"apt-get download {package} left no .deb")
    tree = work / "kernel"
    _run("dpkg-deb", "-x", str(debs[-1]), str(tree))
    kernels = sorted((tree / "boot").glob("vmlinuz-*"))
    modules = sorted((tree / "lib" / "modules").glob("*"))
    if not kernels or not modules:
        raise BuildError(f"{debs[-1].name} holds no vmlinuz or modules")
    return kernels[-1], modules[-1]


def kernel_package() -> str:
    """The versioned package ``linux-image-amd64`` points at (its first dependency)."""
    out = _run("apt-cache", "depends", "linux-image-amd64")
    for line in out.splitlines():
        match = re.search(r"Depends:\s*(linux-image-\S+)", line)
        if match:
            return match.group(1)
    raise BuildError("apt-cache knows no linux-image-amd64: run apt-get update")


def _copy(src: Path, root: Path) -> None:
    target = root / str(src).lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        shutil.copy2(src, target, follow_symlinks=True)


def _libraries(binaries: list[Path]) -> set[Path]:
    libs: set[Path] = set()
    for binary in binaries:
        done = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=60)
        libs.update(Path(m) for m in _LDD_PATH.findall(done.stdout))
    return libs


def _runtime_distributions() -> list[md.Distribution]:
    """hwfleet's required dependencies, transitively (no extras)."""
    seen: dict[str, md.Distribution] = {}
    todo = ["hwfleet"]
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        seen[key] = dist
        for text in dist.requires or []:
            # Extras are left out; other markers (python_version …) are taken as met: an
            # unneeded small package costs less than a missing one.
            match = _REQ_NAME.match(text)
            if match and "extra ==" not in text and "extra==" not in text:
                todo.append(match.group(0))
    return list(seen.values())


def _copy_site(root: Path) -> list[Path]:
    """hwfleet and its dependencies into /opt/hwfleet/site; returns the shared objects."""
    import hwfleet

    site = root / "opt" / "hwfleet" / "site"
    shutil.copytree(
        Path(hwfleet.__file__).parent, site / "hwfleet", ignore=shutil.ignore_patterns("*.pyc")
    )
    shared: list[Path] = []
    for dist in _runtime_distributions():
        own = dist.metadata["Name"] == "hwfleet"
        for file in dist.files or []:
            src = Path(str(dist.locate_file(file)))
            if src.suffix == ".pyc" or ".." in file.parts or not src.is_file():
                continue
            if own and not file.parts[0].endswith(".dist-info"):
                continue  # the package is copied above; its metadata holds the entry points
            target = site / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
            if src.suffix == ".so":
                shared.append(src)
    return shared


def build_tree(root: Path, modules: Path) -> None:
    """The initramfs's files under ``root``."""
    for binary in (BUSYBOX, PYTHON):
        if not binary.is_file():
            raise BuildError(f"{binary} is missing: install Debian's busybox and python3.11")
    for sub in ("bin", "proc", "sys", "dev", "etc/hwfleet", "lib/modules"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    _copy(PYTHON, root)
    shutil.copytree(
        STDLIB,
        root / "usr" / "lib" / "python3.11",
        ignore=lambda d, names: [n for n in names if n in _STDLIB_SKIP or n == "__pycache__"],
    )
    shared = _copy_site(root)
    dynload = list((STDLIB / "lib-dynload").glob("*.so"))
    for lib in _libraries([PYTHON, *dynload, *shared]):
        _copy(lib, root)
    loaded = []
    for module in MODULES:
        if (modules / module).is_file():
            (root / "lib/modules" / module).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(modules / module, root / "lib/modules" / module)
            loaded.append(module)
    (root / "etc/hwfleet/modules").write_text("\n".join(loaded) + "\n")
    for path, text in ((root / "init", INIT), (root / "etc/hwfleet/udhcpc.sh", UDHCPC)):
        path.write_text(text)
        path.chmod(0o755)


def write_cpio(root: Path, out: Path) -> None:
    """A gzip-compressed newc archive, as the kernel unpacks into its rootfs."""
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    tmp = out.with_suffix(".tmp")
    with tmp.open("wb") as sink:
        cpio = subprocess.Popen(
            ["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )  # fmt: skip
        gzip = subprocess.Popen(["gzip", "-6"], stdin=cpio.stdout, stdout=sink)
        assert cpio.stdin is not None and cpio.stdout is not None
        cpio.stdout.close()  # gzip holds it now
        cpio.stdin.write(("\n".join([".", *names]) + "\n").encode())
        cpio.stdin.close()
        if cpio.wait(600) != 0 or gzip.wait(600) != 0:
            raise BuildError("cpio | gzip failed")
    os.replace(tmp, out)


def build_discovery(
    out: Path, *, kernel: Path | None = None, keep_tree: Path | None = None
) -> dict[str, object]:
    """Build ``out/vmlinuz`` and ``out/initrd.img``; returns what was built."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hwfleet-discovery-") as tmp:
        work = Path(tmp)
        package = kernel_package()
        vmlinuz, modules = fetch_kernel(package, work)
        root = keep_tree or work / "root"
        if root.exists():
            shutil.rmtree(root)
        build_tree(root, modules)
        shutil.copy2(kernel or vmlinuz, out / "vmlinuz")
        write_cpio(root, out / "initrd.img")
    return {
        "kernel_package": package,
        "vmlinuz": str(out / "vmlinuz"),
        "initrd": str(out / "initrd.img"),
        "initrd_bytes": (out / "initrd.img").stat().st_size,
    }
