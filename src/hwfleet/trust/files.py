"""Private files of the PKI: a 0700 directory, 0600 files, written atomically.

Certificates are not secret, but keeping every PKI file 0600 means a wrong
umask or a copy-paste can never leave a private key readable, and a crash
mid-write never leaves a half-written key behind (write to a temporary file,
fsync, rename).
"""

from __future__ import annotations

import os
from pathlib import Path

PKI_DIR = "pki"


def pki_dir(data_dir: str | os.PathLike[str]) -> Path:
    """``<data-dir>/pki``, created 0700 (and tightened if it already existed)."""
    path = Path(data_dir) / PKI_DIR
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with ``data``, mode 0600 from the first byte."""
    # os.urandom, not secrets: the name need only be unique, and secrets brings random
    # into every agent (issue 18's memory budget).
    tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.chmod(path, 0o600)


def read_text(path: Path) -> str | None:
    """The file's text, or None when it does not exist."""
    try:
        return path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
